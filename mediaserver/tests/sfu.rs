//! The SFU end to end through a real media server: clients join over the control protocol
//! (tickets signed here), and video and RTCP go over real UDP sockets on loopback. These
//! check what the reflector's virtual-time tests cannot: that the server wires the SFU up
//! (payload types, `simulcast=`, `rtx=`, `layer`, `--last-n`) and that feedback from a
//! participant's address reaches the reflector and is answered.

mod common;

use common::control::*;
use mesh::rtcp::{self, Rtcp};
use mesh::RtpView;
use protocol::ServerMsg;
use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use testkit::net::{Impairments, Net};
use testkit::packet;

/// SSRCs that PLIs or FIRs in `data` (RTCP from the server) ask keyframes of.
fn keyframe_asks(data: &[u8]) -> Vec<u32> {
    let mut v = Vec::new();
    if !mesh::rtp::is_rtcp(data) {
        return v;
    }
    for p in rtcp::packets(data).flatten() {
        match p {
            Rtcp::Pli { sender, media } => {
                assert_eq!(sender, reflector::SFU_SSRC, "the SFU signs its PLIs");
                v.push(media);
            }
            Rtcp::Fir(f) => v.extend(f.entries().map(|(m, _)| m)),
            _ => {}
        }
    }
    v
}

/// Reads every datagram waiting on a non-blocking `sock`; returns the SSRCs asked for
/// keyframes.
fn drain_feedback(sock: &UdpSocket) -> Vec<u32> {
    let mut buf = [0u8; 2048];
    let mut asks = Vec::new();
    while let Ok(n) = sock.recv(&mut buf) {
        asks.extend(keyframe_asks(&buf[..n]));
    }
    asks
}

/// A UDP relay between the server and a receiver: server->receiver RTP crosses a seeded
/// lossy link (`loss_pct`; never the first packet, which the receiver could not know it
/// missed), everything else passes. Records the media sequence numbers lost on their first
/// pass.
struct Relay {
    addr: SocketAddr,
    lost: Arc<Mutex<HashSet<u16>>>,
    _stop: Stop,
}

impl Relay {
    fn start(receiver: SocketAddr, server: SocketAddr, media_ssrc: u32, loss_pct: f64) -> Relay {
        let sock = udp();
        let addr = sock.local_addr().unwrap();
        let lost = Arc::new(Mutex::new(HashSet::new()));
        let (stop, flag) = stop_flag();
        let lost2 = lost.clone();
        thread::spawn(move || {
            // Time is the wall clock here: a loss-only link delivers at once.
            let mut down = Net::new(0x5eed_1234_9876_abcd);
            down.set((), Impairments::loss(loss_pct));
            let mut seen = HashSet::new();
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let data = &buf[..n];
                if from == receiver {
                    let _ = sock.send_to(data, server);
                    continue;
                }
                if let (false, Ok(v)) = (mesh::rtp::is_rtcp(data), RtpView::parse(data)) {
                    let first_pass = v.ssrc() == media_ssrc && seen.insert(v.sequence_number());
                    if seen.len() > 1 {
                        let now = Instant::now();
                        if down.send(now, (), data.to_vec()).dropped() && first_pass {
                            lost2.lock().unwrap().insert(v.sequence_number());
                        }
                        for d in down.drain(now) {
                            let _ = sock.send_to(&d.packet, receiver);
                        }
                        continue;
                    }
                }
                let _ = sock.send_to(data, receiver);
            }
        });
        Relay {
            addr,
            lost,
            _stop: stop,
        }
    }
}

/// Packets S sends in the NACK test (2 s at 200 packets/s), from a sequence number that
/// wraps on the way.
const NACK_PACKETS: u16 = 400;
const NACK_FIRST_SEQ: u16 = 65_400;

/// NACK recovery through a lossy downlink: 10% of what the server sends R is dropped; R asks
/// for what it misses (again if a resend is lost too) and gets at least 90% back, as RTX
/// with the original sequence number inside when it asked for `rtx=`.
fn nack_recovery(rtx: Option<u8>) {
    let server = Server::start(None);
    let conf = format!("nack-{rtx:?}");
    let mut s = server.join(&conf, "sender");
    let mut r = server.join(&conf, "receiver");
    let (s_sock, r_sock) = (udp(), udp());
    let media = s.video.ssrc;
    let relay = Relay::start(r_sock.local_addr().unwrap(), r.video.addr, media, 10.0);
    s.video_channel(s_sock.local_addr().unwrap(), "");
    let opts = rtx.map(|pt| format!("\trtx={pt}")).unwrap_or_default();
    r.video_channel(relay.addr, &opts);
    s.sync();
    r.sync();

    let (to, ssrc) = (s.video.addr, media);
    let sender = thread::spawn(move || {
        for i in 0..NACK_PACKETS {
            let seq = NACK_FIRST_SEQ.wrapping_add(i);
            let p = h264(ssrc, seq, u32::from(i) * 450, i == 0, 0, 600);
            s_sock.send_to(&p, to).unwrap();
            thread::sleep(Duration::from_millis(5));
        }
    });

    let index = |seq: u16| usize::from(seq.wrapping_sub(NACK_FIRST_SEQ));
    let mut got = vec![false; usize::from(NACK_PACKETS)];
    let mut first: Option<usize> = None;
    let mut max = 0usize;
    let mut asked: HashMap<usize, (Instant, u32)> = HashMap::new();
    let (mut rtx_packets, mut plain_dups) = (0u32, 0u32);
    let mut last_round = Instant::now();
    let mut done_at: Option<Instant> = None;
    let mut buf = [0u8; 2048];
    while done_at.is_none_or(|t| t.elapsed() < Duration::from_millis(400)) {
        if done_at.is_none() && sender.is_finished() {
            done_at = Some(Instant::now());
        }
        if let Ok(n) = r_sock.recv(&mut buf) {
            let data = &buf[..n];
            let Some(v) = media_rtp(data) else {
                continue;
            };
            let p = v.payload();
            let seq = if v.ssrc() == media {
                assert_eq!(v.payload_type(), H264_PT);
                assert_eq!(p[2..4], v.sequence_number().to_be_bytes(), "intact copy");
                v.sequence_number()
            } else {
                assert_eq!(v.ssrc(), reflector::nack::rtx_ssrc(media), "RTX SSRC rule");
                assert_eq!(Some(v.payload_type()), rtx, "RTX only when negotiated");
                let osn = u16::from_be_bytes([p[0], p[1]]);
                assert_eq!(
                    p[4..6],
                    osn.to_be_bytes(),
                    "RTX carries the original payload"
                );
                rtx_packets += 1;
                osn
            };
            let i = index(seq);
            assert!(i < got.len(), "unknown sequence number {seq}");
            if got[i] {
                plain_dups += 1;
            }
            got[i] = true;
            first.get_or_insert(i);
            max = max.max(i);
        }
        // Every 20 ms, a NACK for the gaps not asked for in the last 50 ms.
        if last_round.elapsed() >= Duration::from_millis(20) {
            last_round = Instant::now();
            let Some(lo) = first else { continue };
            let mut lost = Vec::new();
            for i in (lo..max).filter(|&i| !got[i]) {
                let a = asked.entry(i).or_insert((Instant::now(), 0));
                let due = a.1 == 0 || a.0.elapsed() >= Duration::from_millis(50);
                if due && a.1 < 8 {
                    *a = (Instant::now(), a.1 + 1);
                    lost.push(NACK_FIRST_SEQ.wrapping_add(i as u16));
                }
            }
            for chunk in lost.chunks(16) {
                let nack = packet::nack(r.video.ssrc, media, chunk);
                r_sock.send_to(&nack, relay.addr).unwrap();
            }
        }
    }
    let lost: Vec<usize> = relay
        .lost
        .lock()
        .unwrap()
        .iter()
        .map(|&s| index(s))
        .filter(|&i| i < max)
        .collect();
    let recovered = lost.iter().filter(|&&i| got[i]).count();
    assert!(
        lost.len() >= 20,
        "the relay lost only {} packets",
        lost.len()
    );
    assert!(
        recovered * 10 >= lost.len() * 9,
        "recovered {recovered} of {} lost packets",
        lost.len()
    );
    match rtx {
        Some(_) => assert!(rtx_packets as usize >= recovered, "resends come as RTX"),
        None => assert_eq!(rtx_packets, 0),
    }
    // A resend is asked for only while missing; the odd late one may cross a NACK.
    assert!(plain_dups <= 5, "{plain_dups} duplicates");
}

#[test]
fn nack_recovers_lost_packets_through_a_lossy_relay() {
    nack_recovery(None);
}

#[test]
fn nack_recovers_lost_packets_as_rtx() {
    nack_recovery(Some(98));
}

/// A camera on a thread: one packet per frame every `frame`, keyframes every `gop` frames
/// (0: only the first) and whenever the SFU asks. Returns when it was asked.
fn camera(
    sock: UdpSocket,
    to: SocketAddr,
    ssrc: u32,
    frame: Duration,
    gop: u32,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<Vec<Instant>> {
    sock.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        let mut asks = Vec::new();
        let mut i = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let fresh = drain_feedback(&sock);
            let asked = fresh.contains(&ssrc);
            if asked {
                asks.push(Instant::now());
            }
            let key = i == 0 || asked || (gop > 0 && i.is_multiple_of(gop));
            let p = h264(ssrc, i as u16, i * 3000, key, 0, 400);
            sock.send_to(&p, to).unwrap();
            i += 1;
            thread::sleep(frame);
        }
        asks
    })
}

/// The first RTP packet on `sock` within `limit`.
fn first_rtp(sock: &UdpSocket, limit: Duration) -> Option<Vec<u8>> {
    let t0 = Instant::now();
    let mut buf = [0u8; 2048];
    while t0.elapsed() < limit {
        if let Ok(n) = sock.recv(&mut buf) {
            if !mesh::rtp::is_rtcp(&buf[..n]) && RtpView::parse(&buf[..n]).is_ok() {
                return Some(buf[..n].to_vec());
            }
        }
    }
    None
}

/// A late joiner: the SFU asks the sender for a keyframe (PLI), and the joiner's first
/// video packet starts one, although the sender was sending deltas only. The joiner sends
/// its `channel` line `channel_delay` after the server's offer, as a client a round trip
/// away does.
fn late_joiner(channel_delay: Duration) {
    let server = Server::start(None);
    let mut s = server.join("late", "sender");
    let mut r = server.join("late", "early");
    let (s_sock, r_sock, j_sock) = (udp(), udp(), udp());
    s.video_channel(s_sock.local_addr().unwrap(), "");
    r.video_channel(r_sock.local_addr().unwrap(), "");
    s.sync();
    r.sync();
    let (stop, flag) = stop_flag();
    let cam = camera(
        s_sock,
        s.video.addr,
        s.video.ssrc,
        Duration::from_millis(10),
        0,
        flag,
    );
    let first = first_rtp(&r_sock, Duration::from_secs(2)).expect("early receiver gets video");
    assert!(is_keyframe_start(RtpView::parse(&first).unwrap().payload()));
    thread::sleep(Duration::from_millis(500));

    let joined_at = Instant::now();
    let mut j = server.join("late", "joiner");
    thread::sleep(channel_delay);
    j.video_channel(j_sock.local_addr().unwrap(), "");
    j.sync();
    let got = first_rtp(&j_sock, Duration::from_secs(2)).expect("the joiner gets video");
    drop(stop);
    let asks = cam.join().unwrap();
    let v = RtpView::parse(&got).unwrap();
    assert_eq!(v.ssrc(), s.video.ssrc);
    assert!(
        is_keyframe_start(v.payload()),
        "first packet at the joiner is not a keyframe start: {:02x?}",
        &v.payload()[..4]
    );
    assert!(
        asks.iter().any(|&t| t >= joined_at),
        "no PLI reached the sender after the join ({} before)",
        asks.len()
    );
}

#[test]
fn late_joiner_gets_a_keyframe_first() {
    late_joiner(Duration::ZERO);
}

#[test]
fn late_joiner_a_round_trip_away_gets_a_keyframe_first() {
    late_joiner(Duration::from_millis(150));
}

/// Simulcast end to end: S publishes 3 encodings (`simulcast=`), R asks for `layer 0`, then
/// `layer auto`. R sees one SSRC with continuous numbering, switched on keyframes.
#[test]
fn simulcast_layer_requests_switch_on_keyframes() {
    let server = Server::start(None);
    let mut s = server.join("sim", "sender");
    let mut r = server.join("sim", "receiver");
    let (s_sock, r_sock) = (udp(), udp());
    let top = s.video.ssrc;
    // SSRCs the server did not hand out (it picks random nonzero ones; a clash is refused).
    let (low, mid) = (top ^ 0x0101_0101, top ^ 0x0202_0202);
    s.video_channel(
        s_sock.local_addr().unwrap(),
        &format!("\tsimulcast={low},{mid}"),
    );
    r.video_channel(r_sock.local_addr().unwrap(), "");
    s.sync();
    r.sync();

    let (stop, flag) = stop_flag();
    let to = s.video.addr;
    s_sock.set_nonblocking(true).unwrap();
    let sender = thread::spawn(move || {
        let ssrcs = [low, mid, top];
        let mut i = 0u32;
        while !flag.load(Ordering::Relaxed) {
            let asks = drain_feedback(&s_sock);
            for (l, &ssrc) in ssrcs.iter().enumerate() {
                let key = i.is_multiple_of(25) || asks.contains(&ssrc);
                let seq = (l as u16 * 10_000).wrapping_add(i as u16);
                let p = h264(
                    ssrc,
                    seq,
                    7 * l as u32 + i * 1800,
                    key,
                    l as u8,
                    200 + 300 * l,
                );
                s_sock.send_to(&p, to).unwrap();
            }
            i += 1;
            thread::sleep(Duration::from_millis(20));
        }
    });

    // (sequence number, timestamp, layer mark, keyframe start) of each packet R gets.
    let mut seen: Vec<(u16, u32, u8, bool)> = Vec::new();
    let mut collect = |until: Duration| {
        let t0 = Instant::now();
        let mut buf = [0u8; 2048];
        while t0.elapsed() < until {
            let Ok(n) = r_sock.recv(&mut buf) else {
                continue;
            };
            let data = &buf[..n];
            let Some(v) = media_rtp(data) else {
                continue;
            };
            assert_eq!(v.ssrc(), top, "one SSRC, the top encoding's");
            let p = v.payload();
            seen.push((
                v.sequence_number(),
                v.timestamp(),
                p[1],
                is_keyframe_start(p),
            ));
        }
    };
    collect(Duration::from_millis(700));
    r.send("layer\t0\n");
    r.sync();
    collect(Duration::from_millis(700));
    r.send("layer\tauto\n");
    r.sync();
    collect(Duration::from_millis(700));
    drop(stop);
    sender.join().unwrap();

    assert!(seen.len() > 40, "only {} packets", seen.len());
    for w in seen.windows(2) {
        assert_eq!(w[1].0, w[0].0.wrapping_add(1), "sequence gap at {w:?}");
        assert!(
            (w[1].1.wrapping_sub(w[0].1) as i32) > 0,
            "timestamp went back at {w:?}"
        );
    }
    // Runs of one layer: top, lowest, top again, each starting at a keyframe.
    let mut runs: Vec<u8> = Vec::new();
    for (k, &(_, _, mark, key)) in seen.iter().enumerate() {
        if runs.last() != Some(&mark) {
            assert!(
                key,
                "switch to layer {mark} at packet {k} without a keyframe"
            );
            runs.push(mark);
        }
    }
    assert_eq!(runs, vec![2, 0, 2], "layers R got, in order");
}

/// Last-N = 2 through the server: four senders talk in turn (RFC 6464 levels in their
/// audio), and the receiver gets video from the two most recent speakers only; everyone
/// hears of the talk runs as `speaking` lines.
#[test]
fn last_n_follows_the_two_most_recent_speakers() {
    let server = Server::start(Some(2));
    let mut senders = Vec::new();
    for k in 1..=4 {
        let mut c = server.join("lastn", &format!("s{k}"));
        let (a, v) = (udp(), udp());
        c.audio_channel(a.local_addr().unwrap());
        c.video_channel(v.local_addr().unwrap(), "");
        c.sync();
        v.set_nonblocking(true).unwrap();
        senders.push((c, a, v));
    }
    let mut r = server.join("lastn", "watcher");
    let r_sock = udp();
    r.video_channel(r_sock.local_addr().unwrap(), "");
    r.sync();

    let talker = Arc::new(AtomicU32::new(0));
    let (stop, flag) = stop_flag();
    let plan: Vec<(u32, u32, u32, UdpSocket, UdpSocket)> = senders
        .iter()
        .enumerate()
        .map(|(k, (c, a, v))| {
            let a = a.try_clone().unwrap();
            let v = v.try_clone().unwrap();
            (k as u32 + 1, c.audio.ssrc, c.video.ssrc, a, v)
        })
        .collect();
    let (to, talking) = (r.video.addr, talker.clone());
    let media = thread::spawn(move || {
        let mut i = 0u32;
        while !flag.load(Ordering::Relaxed) {
            let now_talking = talking.load(Ordering::Relaxed);
            for (k, assrc, vssrc, a, v) in &plan {
                let level = if *k == now_talking { 30 } else { 127 };
                a.send_to(&audio_with_level(*assrc, i as u16, level), to)
                    .unwrap();
                let key = i.is_multiple_of(25) || drain_feedback(v).contains(vssrc);
                v.send_to(&h264(*vssrc, i as u16, i * 1800, key, *k as u8, 300), to)
                    .unwrap();
            }
            i += 1;
            thread::sleep(Duration::from_millis(20));
        }
    });

    let video = |id: u32| senders[id as usize - 1].0.video.ssrc;
    // The video SSRCs R got over `window`, sorted.
    let watch = |window: Duration| {
        let mut buf = [0u8; 2048];
        // What queued up before the window does not count.
        while r_sock.recv(&mut buf).is_ok() {}
        let t0 = Instant::now();
        let mut got = HashSet::new();
        while t0.elapsed() < window {
            if let Ok(n) = r_sock.recv(&mut buf) {
                let data = &buf[..n];
                if let Some(v) = media_rtp(data) {
                    got.insert(v.ssrc());
                }
            }
        }
        let mut v: Vec<u32> = got.into_iter().collect();
        v.sort_unstable();
        v
    };
    let want = |ids: [u32; 2]| {
        let mut v = vec![video(ids[0]), video(ids[1])];
        v.sort_unstable();
        v
    };
    // Nobody has talked: the first two by join order.
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        watch(Duration::from_millis(400)),
        want([1, 2]),
        "before anyone talked"
    );
    let mut recent = [1u32, 2];
    for who in [3u32, 4, 1, 2] {
        talker.store(who, Ordering::Relaxed);
        thread::sleep(Duration::from_millis(400));
        talker.store(0, Ordering::Relaxed);
        recent = [
            who,
            if recent[0] == who {
                recent[1]
            } else {
                recent[0]
            },
        ];
        // Measured once the newcomer's keyframe has come and the old one's video stopped.
        thread::sleep(Duration::from_millis(100));
        assert_eq!(
            watch(Duration::from_millis(400)),
            want(recent),
            "after s{who} talked"
        );
    }
    drop(stop);
    media.join().unwrap();
    let starts: Vec<u32> = r
        .sync()
        .into_iter()
        .filter_map(|m| match m {
            ServerMsg::Speaking { participant, on } if on => Some(participant),
            _ => None,
        })
        .collect();
    let ids: Vec<u32> = [3, 4, 1, 2]
        .iter()
        .map(|&k| senders[k - 1].0.participant)
        .collect();
    assert_eq!(starts, ids, "speaking on lines, in talk order");
}
