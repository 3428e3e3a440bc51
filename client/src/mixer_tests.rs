//! The receive side in virtual time: jitter buffer, concealment, mixing, adaptation.

use super::*;
use crate::tone::{Sine, ToneAnalysis, Window};
use codecs::opus::Encoder;

const F: u64 = FRAME_SAMPLES as u64;

/// Opus payloads of `frames` 20 ms frames of a tone.
fn payloads(freq: f64, db: f64, frames: usize) -> Vec<Bytes> {
    let mut enc = Encoder::new().unwrap();
    let mut sine = Sine::new(freq, db, SAMPLE_RATE);
    let mut pcm = vec![0; FRAME_SAMPLES];
    (0..frames)
        .map(|_| {
            sine.fill(&mut pcm);
            Bytes::copy_from_slice(enc.encode(&pcm).unwrap())
        })
        .collect()
}

fn pkt(ssrc: u32, seq: u16, timestamp: u32, payload: &Bytes) -> RtpIn {
    RtpIn {
        payload_type: 111,
        marker: false,
        seq,
        timestamp,
        ssrc,
        payload: payload.clone(),
    }
}

/// Packets of one stream, packet k arriving at `start + k * 20 ms`.
fn stream(ssrc: u32, start: u64, seq0: u16, ts0: u32, p: &[Bytes]) -> Vec<(u64, RtpIn)> {
    p.iter()
        .enumerate()
        .map(|(k, b)| {
            let seq = seq0.wrapping_add(k as u16);
            let ts = ts0.wrapping_add(k as u32 * FRAME_SAMPLES as u32);
            (start + k as u64 * F, pkt(ssrc, seq, ts, b))
        })
        .collect()
}

/// Feeds arrivals in time order, advancing the clock as it goes, up to `end`.
fn play(mut arrivals: Vec<(u64, RtpIn)>, end: u64) -> (Vec<i16>, MixStats) {
    arrivals.sort_by_key(|(t, _)| *t);
    let mut m = Mixer::new(PLAYOUT_DELAY, true);
    let mut out = Vec::new();
    for (t, p) in arrivals {
        m.advance(t, &mut out);
        m.push(t, &p);
    }
    m.advance(end, &mut out);
    assert_eq!(
        out.len() as u64,
        end,
        "the timeline covers the whole session"
    );
    (out, m.stats())
}

fn level(x: &[i16], freq: f64, skip: f64, duration: f64) -> f64 {
    let w = Window {
        skip,
        duration,
        block: 0.1,
    };
    ToneAnalysis::new(x, SAMPLE_RATE, w).unwrap().level_db(freq)
}

fn energy(x: &[i16]) -> f64 {
    x.iter().map(|&v| f64::from(v).powi(2)).sum()
}

#[test]
fn two_streams_are_summed_on_the_wall_clock() {
    let mut arrivals = stream(1, 0, 100, 5_000, &payloads(440.0, -12.0, 100));
    // B joins 1 s later, with unrelated sequence numbers and timestamps.
    arrivals.extend(stream(
        2,
        48_000,
        60_000,
        4_000_000_000,
        &payloads(660.0, -12.0, 50),
    ));
    let (out, stats) = play(arrivals, 2 * 48_000 + 6_000);
    assert_eq!((stats.streams, stats.packets, stats.lost), (2, 150, 0));
    assert!((level(&out, 440.0, 0.2, 0.7) + 12.0).abs() < 1.0);
    assert!(
        level(&out, 660.0, 0.2, 0.7) < -50.0,
        "B is silent before it starts"
    );
    assert!((level(&out, 440.0, 1.2, 0.8) + 12.0).abs() < 1.0);
    assert!((level(&out, 660.0, 1.2, 0.8) + 12.0).abs() < 1.0);
    // Nothing before the first packet's arrival plus the playout delay.
    assert!(out[..PLAYOUT_DELAY as usize].iter().all(|&s| s == 0));
    assert!(out[PLAYOUT_DELAY as usize..][..FRAME_SAMPLES]
        .iter()
        .any(|&s| s != 0));
}

#[test]
fn reordered_packets_land_in_place() {
    let p = payloads(440.0, -12.0, 50);
    let reference = play(stream(7, 0, 0, 0, &p), 50 * F + PLAYOUT_DELAY).0;
    let mut arrivals = stream(7, 0, 0, 0, &p);
    for k in [10, 20, 30] {
        // Packet k comes 30 ms late, after k + 1.
        arrivals[k].0 += 30 * 48;
    }
    let (out, stats) = play(arrivals, 50 * F + PLAYOUT_DELAY);
    assert_eq!((stats.late, stats.lost, stats.concealed), (0, 0, 0));
    assert_eq!(out, reference);
}

#[test]
fn loss_is_concealed_without_shifting_time() {
    let p = payloads(440.0, -12.0, 50);
    let end = 50 * F + PLAYOUT_DELAY;
    let reference = play(stream(7, 0, 0, 0, &p), end).0;
    let mut arrivals = stream(7, 0, 0, 0, &p);
    arrivals.remove(20);
    let (out, stats) = play(arrivals, end);
    assert_eq!((stats.lost, stats.concealed, stats.packets), (1, 1, 49));
    // The concealed frame is not silence.
    let gap = (PLAYOUT_DELAY + 20 * F) as usize;
    assert!(
        energy(&out[gap..gap + FRAME_SAMPLES]) > 0.1 * energy(&reference[gap..gap + FRAME_SAMPLES])
    );
    // Later frames sit where they belong: close to the reference, far from it shifted.
    let later = gap + 5 * FRAME_SAMPLES..gap + 25 * FRAME_SAMPLES;
    let diff: Vec<i16> = out[later.clone()]
        .iter()
        .zip(&reference[later.clone()])
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    let shifted: Vec<i16> = out[later.clone()]
        .iter()
        .zip(&reference[later.start - FRAME_SAMPLES / 4..])
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    let signal = energy(&reference[later]);
    assert!(energy(&diff) < 0.01 * signal, "aligned after the gap");
    assert!(
        energy(&shifted) > 0.5 * signal,
        "a shifted copy would differ"
    );
}

#[test]
fn duplicates_are_ignored() {
    let p = payloads(440.0, -12.0, 30);
    let end = 30 * F + PLAYOUT_DELAY;
    let reference = play(stream(3, 0, 65_530, 0, &p), end).0;
    let mut arrivals = stream(3, 0, 65_530, 0, &p);
    let copies: Vec<_> = arrivals
        .iter()
        .map(|(t, pk)| (t + 5 * 48, pk.clone()))
        .collect();
    arrivals.extend(copies);
    let (out, stats) = play(arrivals, end);
    assert_eq!((stats.duplicates, stats.packets, stats.lost), (30, 30, 0));
    assert_eq!(out, reference);
}

#[test]
fn late_packet_is_dropped_and_concealed() {
    let p = payloads(440.0, -12.0, 30);
    let mut arrivals = stream(3, 0, 0, u32::MAX - 5 * 960, &p);
    // 100 ms late: past the 60 ms playout delay.
    arrivals[12].0 += 100 * 48;
    let (out, stats) = play(arrivals, 30 * F + PLAYOUT_DELAY);
    assert_eq!((stats.late, stats.lost, stats.concealed), (1, 0, 1));
    assert!((level(&out, 440.0, 0.2, 0.3) + 12.0).abs() < 1.5);
}

#[test]
fn sum_saturates_instead_of_wrapping() {
    assert_eq!(saturate(40_000), i16::MAX);
    assert_eq!(saturate(-40_000), i16::MIN);
    assert_eq!(saturate(-123), -123);
    let p = payloads(440.0, -1.0, 30);
    let end = 30 * F + PLAYOUT_DELAY;
    let single = play(stream(1, 0, 0, 0, &p), end).0;
    let mut arrivals = stream(1, 0, 0, 0, &p);
    arrivals.extend(stream(2, 0, 0, 0, &p));
    let (out, _) = play(arrivals, end);
    assert_eq!(out.iter().max(), Some(&i16::MAX));
    assert_eq!(out.iter().min(), Some(&i16::MIN));
    for (s, o) in single.iter().zip(&out) {
        assert_eq!(*o, saturate(2 * i32::from(*s)));
    }
}

#[test]
fn a_long_pause_is_silence_and_the_stream_resumes_in_place() {
    let p = payloads(440.0, -12.0, 100);
    let mut arrivals = stream(5, 0, 0, 0, &p);
    // Frames 30..80 never sent (sender paused, sequence numbers continue).
    arrivals.retain(|(t, pk)| !(30 * F..80 * F).contains(t) || pk.seq >= 80);
    let mut arrivals: Vec<_> = arrivals
        .into_iter()
        .map(|(t, mut pk)| {
            if pk.seq >= 80 {
                pk.seq -= 50;
            }
            (t, pk)
        })
        .collect();
    arrivals.sort_by_key(|(t, _)| *t);
    let (out, stats) = play(arrivals, 100 * F + PLAYOUT_DELAY);
    assert_eq!(
        (stats.lost, stats.concealed),
        (0, u64::from(MAX_PLC_FRAMES))
    );
    let pause = (PLAYOUT_DELAY + 40 * F) as usize..(PLAYOUT_DELAY + 79 * F) as usize;
    assert!(out[pause].iter().all(|&s| s == 0));
    assert!((level(&out, 440.0, 1.7, 0.3) + 12.0).abs() < 1.0);
}

#[test]
fn a_pause_without_timestamp_advance_resyncs() {
    let p = payloads(440.0, -12.0, 60);
    // 30 frames, then 0.5 s of nothing, then 30 more with timestamps that ignore the pause.
    let arrivals: Vec<_> = stream(5, 0, 0, 0, &p)
        .into_iter()
        .map(|(t, pk)| {
            if pk.seq >= 30 {
                (t + 24_000, pk)
            } else {
                (t, pk)
            }
        })
        .collect();
    let (out, stats) = play(arrivals, 60 * F + 24_000 + PLAYOUT_DELAY);
    assert_eq!((stats.late, stats.lost, stats.packets), (0, 0, 60));
    // The second half plays in full after the pause.
    assert!((level(&out, 440.0, 1.2, 0.5) + 12.0).abs() < 1.0);
}

#[test]
fn counting_only_keeps_stats_without_audio() {
    let p = payloads(440.0, -12.0, 20);
    let mut m = Mixer::new(PLAYOUT_DELAY, false);
    let mut out = Vec::new();
    for (t, pk) in stream(9, 0, 0, 0, &p)
        .into_iter()
        .filter(|(_, pk)| pk.seq != 4)
    {
        m.advance(t, &mut out);
        m.push(t, &pk);
    }
    m.advance(25 * F, &mut out);
    assert!(out.iter().all(|&s| s == 0));
    assert_eq!(out.len() as u64, 25 * F);
    let s = m.stats();
    assert_eq!((s.packets, s.lost, s.streams), (19, 1, 1));
}

/// The adaptive buffer in virtual time, ticked every 20 ms as the recorder does: 10 s
/// of a tone with 0-60 ms of jitter, then 10 s of a calm network (one packet lost).
#[test]
fn adaptive_playout_grows_with_jitter_plays_without_gaps_and_shrinks_when_calm() {
    let frames = 1000usize;
    let p = payloads(440.0, -12.0, frames);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut jitter = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % (60 * 48 + 1)
    };
    let calm_from = 500;
    let mut arrivals: Vec<(u64, RtpIn)> = stream(3, 0, 0, 0, &p)
        .into_iter()
        .enumerate()
        .filter(|(k, _)| *k != 800)
        // The first packet is on time, so the delay must grow to cover the jitter.
        .map(|(k, (t, pk))| (t + if k > 0 && k < calm_from { jitter() } else { 0 }, pk))
        .collect();
    arrivals.sort_by_key(|(t, _)| *t);
    let mut m = Mixer::adaptive(true);
    let mut out = Vec::new();
    let mut tick = 0u64;
    let mut marks = Vec::new();
    let end = frames as u64 * F + 10 * F;
    for (t, pk) in arrivals {
        while tick + F <= t {
            tick += F;
            m.advance(tick, &mut out);
            if tick.is_multiple_of(48_000 * 5) {
                marks.push((tick, m.stats(), m.delay()));
            }
        }
        m.push(t, &pk);
    }
    while tick + F <= end {
        tick += F;
        m.advance(tick, &mut out);
    }
    let (at5, s5, d5) = marks[0];
    let (at10, s10, d10) = marks[1];
    let (_, s15, _) = marks[2];
    assert_eq!((at5, at10), (5 * 48_000, 10 * 48_000));
    // It grew for the jitter: the delay now covers 60 ms.
    assert!(s5.grown > 0, "{s5:?}");
    assert!(
        (50 * 48..=ADAPTIVE_MAX).contains(&d5),
        "delay {} ms",
        d5 / 48
    );
    // Then it played without a gap: nothing late, concealed or grown in 5..10 s...
    assert_eq!(
        (s10.late, s10.concealed, s10.grown),
        (s5.late, s5.concealed, s5.grown),
        "{s5:?} -> {s10:?}"
    );
    // ...and every 20 ms frame of 5..10 s holds the tone.
    for (k, frame) in out[5 * 48_000..10 * 48_000].chunks_exact(960).enumerate() {
        assert!(energy(frame) > 1e9, "frame {k} after 5 s is silent");
    }
    // Calm again: it shrank, well below where the jitter had taken it.
    let fin = m.stats();
    assert!(fin.shrunk >= 1, "{fin:?}");
    assert!(
        m.delay() + F <= d10,
        "{} ms then {} ms: {fin:?}",
        d10 / 48,
        m.delay() / 48
    );
    assert!(m.delay() >= ADAPTIVE_MIN);
    // The lost packet was concealed, nothing came late.
    assert_eq!(fin.late, s5.late);
    assert!(fin.concealed > s15.concealed, "{s15:?} -> {fin:?}");
    assert_eq!(fin.lost, 1);
}

#[test]
fn garbage_payloads_and_timestamps_do_not_break_the_timeline() {
    let mut m = Mixer::new(PLAYOUT_DELAY, true);
    let mut out = Vec::new();
    let junk = Bytes::from_static(&[0xff, 0x00, 0x13]);
    for k in 0..200u32 {
        let now = u64::from(k) * 480;
        m.advance(now, &mut out);
        let ts = k.wrapping_mul(2_654_435_761);
        m.push(now, &pkt(k % 7, (k * 31) as u16, ts, &junk));
    }
    m.advance(200 * 480 + 10_000, &mut out);
    assert_eq!(out.len(), 200 * 480 + 10_000);
    crate::fuzz_datagram(&[0x80, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0xfc, 0xff, 0xfe]);
}
