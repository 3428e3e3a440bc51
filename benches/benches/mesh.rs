//! The mesh without I/O: what one forwarded packet costs in the sans-IO core, with a
//! `reflector::Reflector` as the path, exactly as a media worker runs it but with no socket.
//!
//! Throughput is set to the number of *output* packets per iteration, so criterion's
//! "elem/s" is output packets per second and 1e9 / that is ns per output packet (the issue's
//! "mesh cost per output packet" target). Run:
//! `cargo bench -p benches --bench mesh -- --warm-up-time 1 --measurement-time 3`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mesh::{Command, MediaKind, Mesh, MeshConfig, Remote, TxBatch};
use reflector::Reflector;
use std::net::SocketAddr;
use std::time::Instant;
use testkit::conference::{self, Channel};
use testkit::packet::{h264, Rtp};

const CONF: u32 = 1;
const AUDIO_SIZE: usize = 100;
const VIDEO_SIZE: usize = 1200;

fn addr(p: u32) -> SocketAddr {
    SocketAddr::from(([10, (p >> 16) as u8, (p >> 8) as u8, p as u8], 40_000))
}

fn ssrc(p: u32, kind: MediaKind) -> u32 {
    match kind {
        MediaKind::Audio => 0x1000_0000 + p,
        MediaKind::Video => 0x2000_0000 + p,
    }
}

/// A mesh with one conference of `members` participants, each with an audio channel and,
/// with `video`, a video channel on the same address (needed to receive video).
struct Rig {
    mesh: Mesh<Reflector>,
    now: Instant,
    batch: TxBatch,
}

impl Rig {
    fn new(members: u32, video: bool) -> Rig {
        Rig::with_path(members, video, Reflector::new())
    }

    fn with_path(members: u32, video: bool, path: Reflector) -> Rig {
        let now = Instant::now();
        let cfg = MeshConfig {
            max_participants: members as usize + 8,
            tx_packets: 8192,
            tx_bytes: 8192 * 1500,
            ..MeshConfig::default()
        };
        let mut mesh = Mesh::new(now, cfg);
        conference::create(&mut mesh, now, CONF, path);
        for p in 0..members {
            let channels = [
                Channel::audio(ssrc(p, MediaKind::Audio)),
                Channel::video(ssrc(p, MediaKind::Video)),
            ];
            let n = if video { 2 } else { 1 };
            conference::join(
                &mut mesh,
                now,
                CONF,
                p,
                Remote::Addr(addr(p)),
                &channels[..n],
            );
        }
        mesh.handle_tick(now);
        Rig {
            mesh,
            now,
            batch: TxBatch::with_capacity(8192, 8192 * 1500),
        }
    }

    fn mute(&mut self, p: u32) {
        self.mesh.handle_command(
            self.now,
            Command::Mute {
                conf: CONF,
                participant: p,
                muted: true,
            },
        );
        self.mesh.handle_tick(self.now);
    }

    /// Feeds one packet from `from` and drains the transmit batch; returns packets out.
    fn forward(&mut self, from: SocketAddr, pkt: &mut [u8]) -> usize {
        // Each packet buffer is one stream: its sequence moves on by one per send.
        let seq = u16::from_be_bytes([pkt[2], pkt[3]]).wrapping_add(1);
        pkt[2..4].copy_from_slice(&seq.to_be_bytes());
        self.mesh.handle_datagram(self.now, from, pkt);
        self.mesh.poll_transmit(&mut self.batch);
        let n = self.batch.len();
        self.batch.clear();
        n
    }
}

fn rtp(size: usize, ssrc: u32, pt: u8) -> Vec<u8> {
    Rtp::new(ssrc).pt(pt).size(size).fill(0x5a).build()
}

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout");
    for n in [1u32, 10, 100] {
        let mut rig = Rig::new(n + 1, false);
        let mut pkt = rtp(AUDIO_SIZE, ssrc(0, MediaKind::Audio), 111);
        assert_eq!(rig.forward(addr(0), &mut pkt), n as usize, "setup forwards");
        g.throughput(Throughput::Elements(u64::from(n)));
        g.bench_with_input(BenchmarkId::new("audio_100B", n), &n, |b, _| {
            b.iter(|| black_box(rig.forward(addr(0), &mut pkt)))
        });
    }
    let n = 10;
    let mut rig = Rig::new(n + 1, true);
    let mut pkt = rtp(VIDEO_SIZE, ssrc(0, MediaKind::Video), 96);
    let got = rig.forward(addr(0), &mut pkt);
    assert_eq!(got, n as usize, "{:?}", rig.mesh.stats());
    g.throughput(Throughput::Elements(u64::from(n)));
    g.bench_with_input(BenchmarkId::new("video_1200B", n), &n, |b, _| {
        b.iter(|| black_box(rig.forward(addr(0), &mut pkt)))
    });
    g.finish();
}

/// The in-memory counterpart of `rawfwd`, measured in the same run: one hash lookup of the
/// source address, then a copy of the packet per other member into a reused arena. What
/// the mesh adds over this (sorter statistics, path, filter, scheduler, sender) is its cost.
struct RawFanout {
    members: std::collections::HashMap<SocketAddr, usize>,
    dests: Vec<SocketAddr>,
    arena: Vec<u8>,
    out: Vec<(SocketAddr, usize, usize)>,
}

impl RawFanout {
    fn new(n: u32) -> RawFanout {
        let dests: Vec<SocketAddr> = (0..n).map(addr).collect();
        RawFanout {
            members: dests.iter().enumerate().map(|(i, a)| (*a, i)).collect(),
            dests,
            arena: Vec::with_capacity(8192 * 1500),
            out: Vec::with_capacity(8192),
        }
    }

    fn forward(&mut self, from: SocketAddr, pkt: &[u8]) -> usize {
        let Some(&me) = self.members.get(&from) else {
            return 0;
        };
        for (i, d) in self.dests.iter().enumerate() {
            if i != me {
                let start = self.arena.len();
                self.arena.extend_from_slice(pkt);
                self.out.push((*d, start, self.arena.len()));
            }
        }
        let n = self.out.len();
        self.arena.clear();
        self.out.clear();
        n
    }
}

fn baseline(c: &mut Criterion) {
    let mut g = c.benchmark_group("baseline");
    for n in [1u32, 10, 100] {
        let mut raw = RawFanout::new(n + 1);
        let pkt = rtp(AUDIO_SIZE, 1, 111);
        assert_eq!(raw.forward(addr(0), &pkt), n as usize);
        g.throughput(Throughput::Elements(u64::from(n)));
        g.bench_with_input(BenchmarkId::new("raw_fanout_100B", n), &n, |b, _| {
            b.iter(|| black_box(raw.forward(addr(0), black_box(&pkt))))
        });
    }
    g.finish();
}

/// Sorter and filter costs, through the public API.
fn stages(c: &mut Criterion) {
    let mut g = c.benchmark_group("stages");
    g.throughput(Throughput::Elements(1));
    // Unknown source: the sorter's address lookup and a drop, nothing else.
    let mut rig = Rig::new(2, false);
    let mut pkt = rtp(AUDIO_SIZE, 0xdead_beef, 111);
    let stranger = SocketAddr::from(([192, 0, 2, 1], 9));
    assert_eq!(rig.forward(stranger, &mut pkt), 0);
    g.bench_function("sorter_unknown_source", |b| {
        b.iter(|| black_box(rig.forward(stranger, &mut pkt)))
    });
    // Known source alone in its conference: the whole sorter (sequence, jitter) and the
    // path, with nobody to send to.
    let mut rig = Rig::new(1, false);
    let mut pkt = rtp(AUDIO_SIZE, ssrc(0, MediaKind::Audio), 111);
    assert_eq!(rig.forward(addr(0), &mut pkt), 0);
    g.bench_function("sorter_known_source_alone", |b| {
        b.iter(|| black_box(rig.forward(addr(0), &mut pkt)))
    });
    // A muted source to 10 receivers: sorter + path + 10 filter drops.
    let mut rig = Rig::new(11, false);
    rig.mute(0);
    let mut pkt = rtp(AUDIO_SIZE, ssrc(0, MediaKind::Audio), 111);
    assert_eq!(rig.forward(addr(0), &mut pkt), 0);
    g.throughput(Throughput::Elements(10));
    g.bench_function("filter_muted_to_10", |b| {
        b.iter(|| black_box(rig.forward(addr(0), &mut pkt)))
    });
    g.finish();
}

/// A conference of 50, everyone receiving audio and video: everyone sends audio (100 B);
/// 10 also send video (1200 B) at three packets per audio packet. One iteration is one such round; throughput counts the output
/// packets, so the figure is ns per output packet in a realistic mix.
fn mixed(c: &mut Criterion) {
    const MEMBERS: u32 = 50;
    const VIDEO: u32 = 10;
    const VIDEO_PER_AUDIO: usize = 3;
    let mut rig = Rig::new(MEMBERS, true);
    let mut audio: Vec<Vec<u8>> = (0..MEMBERS)
        .map(|p| rtp(AUDIO_SIZE, ssrc(p, MediaKind::Audio), 111))
        .collect();
    let mut video: Vec<Vec<u8>> = (0..VIDEO)
        .map(|p| rtp(VIDEO_SIZE, ssrc(p, MediaKind::Video), 96))
        .collect();
    let mut round = |rig: &mut Rig| {
        let mut out = 0;
        for p in 0..MEMBERS {
            out += rig.forward(addr(p), &mut audio[p as usize]);
            if p < VIDEO {
                for _ in 0..VIDEO_PER_AUDIO {
                    out += rig.forward(addr(p), &mut video[p as usize]);
                }
            }
        }
        out
    };
    let outputs = round(&mut rig);
    let expected = (MEMBERS as usize + VIDEO as usize * VIDEO_PER_AUDIO) * (MEMBERS as usize - 1);
    assert_eq!(outputs, expected, "every packet reaches the 49 others");
    let mut g = c.benchmark_group("conference");
    g.throughput(Throughput::Elements(outputs as u64));
    g.bench_function("mixed_50_audio_10_video", |b| {
        b.iter(|| black_box(round(&mut rig)))
    });
    g.finish();
}

/// Issue 5's budget: video through the full SFU logic (keyframe gating, the NACK
/// retransmission cache, thinning and RTCP bookkeeping, enabled by declaring the payload
/// type's codec) against plain forwarding of the same packets, in the same run.
fn sfu(c: &mut Criterion) {
    let mut g = c.benchmark_group("sfu");
    let n = 10u32;
    for full in [false, true] {
        let mut path = Reflector::new();
        if full {
            path.set_video_codec(96, reflector::VideoCodec::H264);
        }
        let mut rig = Rig::with_path(n + 1, true, path);
        // An IDR first (NAL type 5) so every receiver is past its keyframe gate, then
        // non-IDR reference slices (NAL type 1), as a running stream sends.
        let mut pkt = rtp(VIDEO_SIZE, ssrc(0, MediaKind::Video), 96);
        pkt[12] = h264::slice(true);
        let got = rig.forward(addr(0), &mut pkt);
        assert_eq!(got, n as usize, "{:?}", rig.mesh.stats());
        pkt[12] = h264::slice(false);
        assert_eq!(rig.forward(addr(0), &mut pkt), n as usize);
        g.throughput(Throughput::Elements(u64::from(n)));
        let name = if full { "full_sfu" } else { "plain" };
        g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
            b.iter(|| black_box(rig.forward(addr(0), &mut pkt)))
        });
    }
    g.finish();
}

criterion_group!(benches, baseline, fanout, stages, mixed, sfu);
criterion_main!(benches);
