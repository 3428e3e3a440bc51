//! Downlink congestion control for one browser, in the manner of GCC
//! (draft-ietf-rmcat-gcc-02): every RTP packet the server sends the browser gets a
//! transport-wide sequence number ([`Downlink::stamp`]), the browser's transport-cc
//! feedback says when each arrived, and a delay-based estimate (arrival-time deltas of
//! packet groups, a trendline over their accumulated delay, an adaptive overuse
//! threshold, AIMD rate control) and a loss-based one give what the path to the browser
//! can take. The session reports the estimate ([`crate::Event::Estimate`]); the worker hands
//! it to the mesh as a REMB from the browser, so the reflector picks simulcast layers and
//! thins video by it, as it does with any receiver's REMB.
//!
//! Fixed-size state: sent packets live in a ring of [`RING`] sequence numbers; nothing is
//! allocated per packet. Feedback (about 20 per second) is read with webrtc-rs's parser.

use std::time::{Duration, Instant};

/// Sent packets remembered, by sequence number.
pub const RING: usize = 4096;
/// Where the estimate starts, before the first feedback (bits/s).
pub const START_BPS: u64 = 2_500_000;
pub const MIN_BPS: u64 = 50_000;
pub const MAX_BPS: u64 = 20_000_000;
/// Packets sent within this span form one group (GCC's burst time).
const GROUP_US: u64 = 5_000;
/// Points in the trendline's window.
const TREND_WINDOW: usize = 20;
/// Smoothing of the accumulated delay.
const SMOOTHING: f64 = 0.9;
/// Gain on the trendline's slope before it meets the threshold.
const TREND_GAIN: f64 = 4.0;
/// Growth per second while nothing congests. GCC's 8% takes a receiver whose limit was
/// lifted tens of seconds to climb back a simulcast layer, with no probing to jump; 50%
/// climbs from 300 kbit/s to a 600 kbit/s layer in under 2 s (the simulcast test wants a
/// lifted receiver up within 5 s), and an overshoot on a limited path is caught by the
/// next loss or overuse within about a second.
const INCREASE_PER_S: f64 = 1.5;
/// Past this multiple of the delivered rate, the estimate grows at GCC's own 8% a second:
/// nothing the receiver got has shown that the path takes more. Without it, a receiver fed
/// a 300 kbit/s layer saw its estimate grow tenfold in five quiet seconds, and the
/// reflector tried a 2.6 Mbit/s layer on a 1 Mbit/s path (GCC caps at 1.5x and probes;
/// this server does not probe, so it climbs on, slowly). Tried in the shaped browser
/// test: 2.5x or 3x had a page behind 300 kbit/s try the next encoding within seconds,
/// and reached the top encoding's 2.6 Mbit/s on a 1 Mbit/s path within 12 s.
const APP_LIMITED_FACTOR: f64 = 2.0;
const SLOW_INCREASE_PER_S: f64 = 1.08;
/// The delivered rate is measured over arrivals this long.
const DELIVERED_WINDOW_US: u64 = 500_000;
/// A cut uses the window being filled once it spans this much: a keyframe that fills the
/// queue right after a move up must be measured at the rate the path drains it, not at
/// the lower layer's rate of the window before.
const CURRENT_WINDOW_US: u64 = 200_000;
/// A loss-based cut is at most this often: reports lag the loss that caused them.
const LOSS_CUT_EVERY: Duration = Duration::from_millis(500);
/// A decrease is at most this often (about one round trip and a half).
const DECREASE_EVERY: Duration = Duration::from_millis(300);
/// The estimate is reported when it moved by this fraction, or after [`REPORT_EVERY`].
const REPORT_CHANGE: f64 = 0.05;
const REPORT_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, Default)]
struct Sent {
    /// Sequence number + 1 (0: empty slot).
    seq1: u32,
    at_us: u64,
    bytes: u32,
}

/// What the detector makes of the delay trend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    Normal,
    Over,
    Under,
}

/// One browser's downlink: stamping, feedback and the estimate.
#[derive(Clone, Debug)]
pub struct Downlink {
    epoch: Instant,
    next_seq: u16,
    sent: Box<[Sent; RING]>,
    /// The group being filled: (first send, last send, last arrival), in µs.
    group: Option<(u64, u64, u64)>,
    /// The last complete group: (last send, last arrival).
    prev: Option<(u64, u64)>,
    accumulated_ms: f64,
    smoothed_ms: f64,
    trend: [(f64, f64); TREND_WINDOW],
    trend_len: usize,
    trend_at: usize,
    deltas: u32,
    threshold_ms: f64,
    last_threshold_us: Option<u64>,
    pub usage: Usage,
    estimate: f64,
    last_update: Option<Instant>,
    last_decrease: Option<Instant>,
    last_loss_cut: Option<Instant>,
    /// Bytes acknowledged by recent feedback and the arrival span they cover, for the
    /// delivered rate: (bytes, first arrival µs, last arrival µs), restarted every
    /// [`DELIVERED_WINDOW_US`].
    acked: (u64, u64, u64),
    delivered_bps: Option<f64>,
    reported: Option<(Instant, f64)>,
    /// Totals, for counters.
    pub feedback: u64,
    pub lost: u64,
    pub received: u64,
}

impl Downlink {
    pub fn new(now: Instant) -> Downlink {
        Downlink {
            epoch: now,
            next_seq: 1,
            sent: Box::new([Sent::default(); RING]),
            group: None,
            prev: None,
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            trend: [(0.0, 0.0); TREND_WINDOW],
            trend_len: 0,
            trend_at: 0,
            deltas: 0,
            threshold_ms: 12.5,
            last_threshold_us: None,
            usage: Usage::Normal,
            estimate: START_BPS as f64,
            last_update: None,
            last_decrease: None,
            last_loss_cut: None,
            acked: (0, 0, 0),
            delivered_bps: None,
            reported: None,
            feedback: 0,
            lost: 0,
            received: 0,
        }
    }

    fn us(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// The estimate, bits/s.
    pub fn estimate(&self) -> u64 {
        self.estimate as u64
    }

    /// Gives the `len`-byte RTP packet in `buf` the next transport-wide sequence number
    /// under one-byte or two-byte extension id `id`: its value is overwritten where the
    /// packet has the extension, else the element is added (the packet grows by 4 or 8
    /// bytes, which `buf` must have to spare beyond `spare`). Returns the new length; a
    /// packet that cannot take it is left as it is.
    pub fn stamp(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
        id: u8,
        spare: usize,
    ) -> usize {
        let seq = self.next_seq;
        let n = match put_sequence(buf, len, id, seq, spare) {
            Some(n) => n,
            None => return len,
        };
        self.next_seq = seq.wrapping_add(1);
        self.sent[usize::from(seq) % RING] = Sent {
            seq1: u32::from(seq) + 1,
            at_us: self.us(now),
            bytes: n as u32,
        };
        n
    }

    /// Reads one transport-cc feedback packet (the RTCP packet, header included) about
    /// what was stamped; returns the estimate when it should be reported.
    pub fn on_feedback(&mut self, now: Instant, pkt: &[u8]) -> Option<u64> {
        use rtc_shared::marshal::Unmarshal;
        use rtcp::transport_feedbacks::transport_layer_cc::{
            PacketStatusChunk, SymbolTypeTcc, TransportLayerCc,
        };
        let mut raw = pkt;
        let fb = TransportLayerCc::unmarshal(&mut raw).ok()?;
        self.feedback += 1;
        let mut arrival = i64::from(fb.reference_time) * 64_000;
        let mut deltas = fb.recv_deltas.iter();
        let mut seq = fb.base_sequence_number;
        let mut lost = 0u64;
        let mut received = 0u64;
        // The last chunk may hold more symbols than the feedback counts: those are padding.
        let mut left = fb.packet_status_count;
        let mut status = |s: SymbolTypeTcc, this: &mut Downlink| {
            if left == 0 {
                return;
            }
            left -= 1;
            let q = seq;
            seq = seq.wrapping_add(1);
            match s {
                SymbolTypeTcc::PacketNotReceived => lost += 1,
                SymbolTypeTcc::PacketReceivedWithoutDelta => received += 1,
                _ => {
                    received += 1;
                    if let Some(d) = deltas.next() {
                        arrival += d.delta;
                        this.on_arrival(q, arrival.max(0) as u64);
                    }
                }
            }
        };
        for chunk in &fb.packet_chunks {
            match chunk {
                PacketStatusChunk::RunLengthChunk(r) => {
                    for _ in 0..r.run_length {
                        status(r.packet_status_symbol, self);
                    }
                }
                PacketStatusChunk::StatusVectorChunk(v) => {
                    for &s in &v.symbol_list {
                        status(s, self);
                    }
                }
            }
        }
        self.lost += lost;
        self.received += received;
        self.update(now, lost, received)
    }

    /// A packet's arrival (µs, the browser's clock): groups and the delay trend.
    fn on_arrival(&mut self, seq: u16, arrival_us: u64) {
        let s = self.sent[usize::from(seq) % RING];
        if s.seq1 != u32::from(seq) + 1 {
            return;
        }
        let (send, bytes) = (s.at_us, u64::from(s.bytes));
        let a = &mut self.acked;
        if a.0 == 0 || arrival_us.saturating_sub(a.1) > DELIVERED_WINDOW_US {
            if a.0 > 0 && a.2 > a.1 {
                self.delivered_bps = Some(a.0 as f64 * 8e6 / (a.2 - a.1) as f64);
            }
            *a = (0, arrival_us, arrival_us);
        }
        a.0 += bytes;
        a.2 = a.2.max(arrival_us);
        match self.group {
            Some((first, _, _)) if send.saturating_sub(first) <= GROUP_US => {
                let g = self.group.as_mut().expect("matched Some");
                g.1 = g.1.max(send);
                g.2 = g.2.max(arrival_us);
            }
            Some((_, last_send, last_arrival)) => {
                if let Some((ps, pa)) = self.prev {
                    let d_ms =
                        (last_arrival as f64 - pa as f64 - (last_send as f64 - ps as f64)) / 1000.0;
                    self.on_delta(d_ms, last_arrival);
                }
                self.prev = Some((last_send, last_arrival));
                self.group = Some((send, send, arrival_us));
            }
            None => self.group = Some((send, send, arrival_us)),
        }
    }

    /// One inter-group delay variation: the trendline and the detector.
    fn on_delta(&mut self, d_ms: f64, arrival_us: u64) {
        self.deltas = (self.deltas + 1).min(1000);
        self.accumulated_ms += d_ms;
        self.smoothed_ms = SMOOTHING * self.smoothed_ms + (1.0 - SMOOTHING) * self.accumulated_ms;
        self.trend[self.trend_at] = (arrival_us as f64 / 1000.0, self.smoothed_ms);
        self.trend_at = (self.trend_at + 1) % TREND_WINDOW;
        self.trend_len = (self.trend_len + 1).min(TREND_WINDOW);
        if self.trend_len < TREND_WINDOW {
            return;
        }
        let n = self.trend_len as f64;
        let (mx, my) = self
            .trend
            .iter()
            .fold((0.0, 0.0), |(x, y), p| (x + p.0 / n, y + p.1 / n));
        let (num, den) = self.trend.iter().fold((0.0, 0.0), |(a, b), p| {
            (a + (p.0 - mx) * (p.1 - my), b + (p.0 - mx) * (p.0 - mx))
        });
        let slope = if den > 0.0 { num / den } else { 0.0 };
        let t = slope * f64::from(self.deltas.min(60)) * TREND_GAIN;
        self.usage = if t > self.threshold_ms {
            Usage::Over
        } else if t < -self.threshold_ms {
            Usage::Under
        } else {
            Usage::Normal
        };
        // The threshold follows the trend slowly, faster downwards (GCC §5.4).
        let dt_ms = self.last_threshold_us.map_or(0.0, |l| {
            (arrival_us.saturating_sub(l) as f64 / 1000.0).min(100.0)
        });
        self.last_threshold_us = Some(arrival_us);
        if t.abs() < self.threshold_ms + 15.0 {
            let k = if t.abs() < self.threshold_ms {
                0.039
            } else {
                0.0087
            };
            self.threshold_ms += k * (t.abs() - self.threshold_ms) * dt_ms;
            self.threshold_ms = self.threshold_ms.clamp(6.0, 600.0);
        }
    }

    /// AIMD on the detector's verdict, capped by loss; returns the estimate to report.
    fn update(&mut self, now: Instant, lost: u64, received: u64) -> Option<u64> {
        let dt = self.last_update.map_or(0.0, |l| {
            now.saturating_duration_since(l).as_secs_f64().min(1.0)
        });
        self.last_update = Some(now);
        let loss = if lost + received > 0 {
            lost as f64 / (lost + received) as f64
        } else {
            0.0
        };
        let since = |t: Option<Instant>, d: Duration| {
            t.is_none_or(|t| now.saturating_duration_since(t) >= d)
        };
        let delivered = self.delivered_bps;
        let current = match self.acked {
            (bytes, first, last)
                if bytes > 0 && last.saturating_sub(first) >= CURRENT_WINDOW_US =>
            {
                Some(bytes as f64 * 8e6 / (last - first) as f64)
            }
            _ => delivered,
        };
        match self.usage {
            // Queues grow: back to under what got through (GCC: 0.85 of the received
            // rate), never up. An estimate already under that stays: cutting it again each
            // time had it sink to the floor while the lowest layer and the audio, which
            // flow whatever it says, kept the queue up; a lifted link then took seconds
            // to climb back from there.
            Usage::Over if since(self.last_decrease, DECREASE_EVERY) => {
                self.estimate = match current {
                    Some(d) => self.estimate.min(0.85 * d),
                    None => 0.85 * self.estimate,
                };
                self.last_decrease = Some(now);
            }
            Usage::Normal if loss < 0.02 => {
                let limited = delivered.is_some_and(|d| self.estimate > APP_LIMITED_FACTOR * d);
                let growth = if limited {
                    SLOW_INCREASE_PER_S
                } else {
                    INCREASE_PER_S
                };
                self.estimate *= growth.powf(dt);
            }
            _ => {}
        }
        // Heavy loss: GCC's loss-based cut, twice a second at most (reports lag), and no
        // higher than what got through (a full buffer hides the delay trend; what it
        // delivers is the path's rate).
        // Nor lower than 0.85 of it: loss that goes on whatever the estimate says (the
        // lowest layer and the audio are more than the path takes) must not drive the
        // estimate down step after step.
        if loss > 0.1 && since(self.last_loss_cut, LOSS_CUT_EVERY) {
            let cut = self.estimate * (1.0 - 0.5 * loss);
            let cut = current.map_or(cut, |d| cut.min(d).max(0.85 * d));
            self.estimate = self.estimate.min(cut);
            self.last_loss_cut = Some(now);
            self.last_decrease = Some(now);
        }
        self.estimate = self.estimate.clamp(MIN_BPS as f64, MAX_BPS as f64);
        let due = match self.reported {
            None => true,
            Some((at, v)) => {
                now.saturating_duration_since(at) >= REPORT_EVERY
                    || (self.estimate - v).abs() > REPORT_CHANGE * v
            }
        };
        if due {
            self.reported = Some((now, self.estimate));
            return Some(self.estimate as u64);
        }
        None
    }
}

/// Writes transport-wide sequence number `seq` under extension `id` into the `len`-byte
/// RTP packet in `buf`, adding the element (and the extension block) where missing.
fn put_sequence(buf: &mut [u8], len: usize, id: u8, seq: u16, spare: usize) -> Option<usize> {
    if len < 12 || !(1..=14).contains(&id) {
        return None;
    }
    let csrc_end = 12 + 4 * usize::from(buf[0] & 0x0f);
    if csrc_end > len {
        return None;
    }
    let v = seq.to_be_bytes();
    if buf[0] & 0x10 == 0 {
        // No extension block: add a one-byte-header block with the one element.
        if len + 8 + spare > buf.len() {
            return None;
        }
        buf.copy_within(csrc_end..len, csrc_end + 8);
        buf[csrc_end..csrc_end + 8].copy_from_slice(&[
            0xbe,
            0xde,
            0,
            1,
            (id << 4) | 1,
            v[0],
            v[1],
            0,
        ]);
        buf[0] |= 0x10;
        return Some(len + 8);
    }
    let head = buf.get(csrc_end..csrc_end + 4)?;
    let profile = u16::from_be_bytes([head[0], head[1]]);
    let words = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let body = csrc_end + 4;
    let end = body + 4 * words;
    if end > len {
        return None;
    }
    let two_byte = profile & 0xfff0 == 0x1000;
    if profile != 0xbede && !two_byte {
        return None;
    }
    // Overwrite an element that is there.
    let mut i = body;
    let mut used = body;
    while i < end {
        let (eid, elen, data) = if two_byte {
            if buf[i] == 0 {
                i += 1;
                continue;
            }
            (buf[i], usize::from(*buf.get(i + 1)?), i + 2)
        } else {
            if buf[i] == 0 {
                i += 1;
                continue;
            }
            if buf[i] >> 4 == 15 {
                break;
            }
            (buf[i] >> 4, usize::from(buf[i] & 0x0f) + 1, i + 1)
        };
        if data + elen > end {
            return None;
        }
        if eid == id && elen == 2 {
            buf[data..data + 2].copy_from_slice(&v);
            return Some(len);
        }
        i = data + elen;
        used = i;
    }
    // Append one element in the block's padding, or a word more.
    let need = if two_byte { 4 } else { 3 };
    let (at, grow) = if used + need <= end {
        (used, 0)
    } else {
        (used, 4)
    };
    if grow > 0 {
        if len + grow + spare > buf.len() {
            return None;
        }
        buf.copy_within(end..len, end + grow);
        for b in &mut buf[end..end + grow] {
            *b = 0;
        }
        let w = (words + 1) as u16;
        buf[csrc_end + 2..csrc_end + 4].copy_from_slice(&w.to_be_bytes());
    }
    if two_byte {
        buf[at..at + 4].copy_from_slice(&[id, 2, v[0], v[1]]);
    } else {
        buf[at..at + 3].copy_from_slice(&[(id << 4) | 1, v[0], v[1]]);
    }
    Some(len + grow)
}

#[cfg(test)]
#[path = "downlink_tests.rs"]
mod tests;
