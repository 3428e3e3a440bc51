//! Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-
//! extensions-01) for a browser's uplink: the session records when each packet with a
//! transport-wide sequence number arrived, and every [`FEEDBACK_EVERY`] writes one RTCP
//! feedback packet with their arrival times. The browser's send-side estimator (GCC)
//! then probes and ramps its send rate as it does with other SFUs.
//!
//! Fixed-size state, no allocation: arrivals live in a ring of [`WINDOW`] sequence numbers.

use std::time::{Duration, Instant};

/// The header extension's URI in SDP.
pub const TWCC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// How often feedback goes out while packets arrive.
pub const FEEDBACK_EVERY: Duration = Duration::from_millis(50);

/// Sequence numbers one feedback can cover; a wider gap starts over.
pub const WINDOW: usize = 512;

/// Arrival times are kept in the feedback's own unit: 250 µs.
const TICK_US: u128 = 250;

/// The arrivals of one browser's packets since the last feedback.
#[derive(Clone, Debug)]
pub struct Recorder {
    /// The first sequence number the next feedback reports.
    base: Option<u16>,
    /// The highest sequence number seen, as an offset from `base`.
    span: u16,
    /// Arrival in ticks since `epoch`, plus one (0: not received), indexed by `seq % WINDOW`.
    arrivals: [u32; WINDOW],
    epoch: Option<Instant>,
    last_sent: Option<Instant>,
    fb_count: u8,
    /// The SSRC the browser sends with (the feedback names it as its media source).
    media: u32,
    /// A packet arrived since the last feedback.
    pending: bool,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            base: None,
            span: 0,
            arrivals: [0; WINDOW],
            epoch: None,
            last_sent: None,
            fb_count: 0,
            media: 0,
            pending: false,
        }
    }
}

/// The transport-wide sequence number in `pkt`'s header extensions under one-byte (RFC
/// 8285 §4.2) or two-byte (§4.3) extension id `id`.
pub fn sequence(pkt: &[u8], id: u8) -> Option<u16> {
    let v = extension(pkt, id)?;
    (v.len() >= 2).then(|| u16::from_be_bytes([v[0], v[1]]))
}

/// The value of header extension `id` in an RTP packet (RFC 8285, one- or two-byte
/// headers), if it carries one.
pub fn extension(pkt: &[u8], id: u8) -> Option<&[u8]> {
    if pkt.len() < 12 || pkt[0] & 0x10 == 0 {
        return None;
    }
    let at = 12 + 4 * usize::from(pkt[0] & 0x0f);
    let head = pkt.get(at..at + 4)?;
    let profile = u16::from_be_bytes([head[0], head[1]]);
    let words = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let body = pkt.get(at + 4..at + 4 + 4 * words)?;
    let two_byte = profile & 0xfff0 == 0x1000;
    if profile != 0xbede && !two_byte {
        return None;
    }
    let mut i = 0;
    while i < body.len() {
        let (eid, len, data) = if two_byte {
            if body[i] == 0 {
                i += 1;
                continue;
            }
            let len = usize::from(*body.get(i + 1)?);
            (body[i], len, i + 2)
        } else {
            let b = body[i];
            if b == 0 {
                i += 1;
                continue;
            }
            if b >> 4 == 15 {
                return None;
            }
            (b >> 4, usize::from(b & 0x0f) + 1, i + 1)
        };
        if eid == id {
            return body.get(data..data + len);
        }
        i = data + len;
    }
    None
}

impl Recorder {
    /// A packet with transport-wide sequence number `seq` (and SSRC `ssrc`) arrived `now`.
    pub fn on_packet(&mut self, now: Instant, seq: u16, ssrc: u32) {
        let epoch = *self.epoch.get_or_insert(now);
        let ticks = (now.saturating_duration_since(epoch).as_micros() / TICK_US) as u32;
        if self.media == 0 {
            self.media = ssrc;
        }
        let base = *self.base.get_or_insert(seq);
        let off = seq.wrapping_sub(base);
        self.pending |= off as i16 >= 0;
        if off as i16 >= 0 && usize::from(off) < WINDOW {
            self.arrivals[usize::from(seq) % WINDOW] = ticks.wrapping_add(1).max(1);
            self.span = self.span.max(off);
        } else if off as i16 > 0 {
            // Far ahead (a long outage): report from here on.
            self.arrivals = [0; WINDOW];
            self.base = Some(seq);
            self.span = 0;
            self.arrivals[usize::from(seq) % WINDOW] = ticks.wrapping_add(1).max(1);
        }
        // Older than the last feedback: already reported as lost; nothing to do.
    }

    /// Whether feedback is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.pending
            && self
                .last_sent
                .is_none_or(|t| now.saturating_duration_since(t) >= FEEDBACK_EVERY)
    }

    /// Writes the feedback for what arrived since the last one into `buf` (RTPFB, FMT 15,
    /// signed with `sender`), and starts the next. None: nothing arrived, or `buf` is too
    /// small (`2 * WINDOW + 200` bytes always do).
    pub fn write(&mut self, now: Instant, sender: u32, buf: &mut [u8]) -> Option<usize> {
        let base = self.base?;
        let count = usize::from(self.span) + 1;
        let got = |k: usize| {
            let seq = base.wrapping_add(k as u16);
            match self.arrivals[usize::from(seq) % WINDOW] {
                0 => None,
                t => Some(t - 1),
            }
        };
        let first = (0..count).find_map(got)?;
        let reference = first / 256; // 64 ms = 256 ticks
        let chunks = count.div_ceil(7);
        // Header 20, chunks, deltas (at most 2 each), padding.
        let need = 20 + 2 * chunks + 2 * count + 3;
        if buf.len() < need {
            return None;
        }
        buf[4..8].copy_from_slice(&sender.to_be_bytes());
        buf[8..12].copy_from_slice(&self.media.to_be_bytes());
        buf[12..14].copy_from_slice(&base.to_be_bytes());
        buf[14..16].copy_from_slice(&(count as u16).to_be_bytes());
        buf[16..20].copy_from_slice(
            &((reference & 0xff_ffff) << 8 | u32::from(self.fb_count)).to_be_bytes(),
        );
        // Status vector chunks of seven 2-bit symbols; deltas after them.
        let mut d = 20 + 2 * chunks;
        let mut prev = i64::from(reference) * 256;
        for c in 0..chunks {
            let mut chunk: u16 = 0xc000;
            for j in 0..7 {
                let k = c * 7 + j;
                let symbol = match (k < count).then(|| got(k)).flatten() {
                    None => 0,
                    Some(t) => {
                        let delta =
                            (i64::from(t) - prev).clamp(i64::from(i16::MIN), i64::from(i16::MAX));
                        prev = i64::from(t);
                        if (0..=255).contains(&delta) {
                            buf[d] = delta as u8;
                            d += 1;
                            1
                        } else {
                            buf[d..d + 2].copy_from_slice(&(delta as i16).to_be_bytes());
                            d += 2;
                            2
                        }
                    }
                };
                chunk |= symbol << (12 - 2 * j);
            }
            buf[20 + 2 * c..22 + 2 * c].copy_from_slice(&chunk.to_be_bytes());
        }
        // RFC 3550 padding: zeros, the last byte counts them, and the P bit.
        let pad = (4 - d % 4) % 4;
        for p in 0..pad {
            buf[d + p] = 0;
        }
        if pad > 0 {
            buf[d + pad - 1] = pad as u8;
        }
        let len = d + pad;
        buf[0] = 0x80 | if pad > 0 { 0x20 } else { 0 } | 15;
        buf[1] = 205;
        buf[2..4].copy_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
        for k in 0..count {
            let seq = base.wrapping_add(k as u16);
            self.arrivals[usize::from(seq) % WINDOW] = 0;
        }
        self.base = Some(base.wrapping_add(count as u16));
        self.span = 0;
        self.fb_count = self.fb_count.wrapping_add(1);
        self.last_sent = Some(now);
        self.pending = false;
        Some(len)
    }
}

#[cfg(test)]
#[path = "twcc_tests.rs"]
mod tests;
