//! Mixing cost: one 20 ms mixing tick of a `mode=mix` conference through the mesh.
//!
//! - `tick/1000p_3t`: a tick at 1,000 participants with 3 talkers (target: 5 ms or less);
//!   participants mixed per core with 3 talkers follow as 20 ms / (tick time per
//!   participant).
//! - `listeners/*` and `talkers/*`: ticks at growing listener and talker counts; the slopes
//!   are the marginal cost of a listener and of a talker.
//!
//! Talkers send a 440 Hz Opus tone every 20 ms; listeners send nothing (Opus DTX / push to
//! talk), so a listener costs its share of the shared mix's fan-out, not a decode.
//!
//! First run (debug=1 release build, 2-core shared VM, `-- --measurement-time 3`):
//! tick/1000p_3t 358 us (target <= 5 ms); listeners/100,200,400 279, 292, 295 us (about
//! 0.05-0.1 us per added listener); talkers/1,3,5 127, 287, 559 us (about 108 us per added
//! talker: one decode, one mix-minus, one encode). So a listener costs three orders of
//! magnitude less than a talker, and a 1,000-participant tick uses under 2% of a core.
//! tick/400p_3t_all_send (every listener sends encoded silence, no DTX, so every one is
//! decoded): 8.2 ms per 20 ms tick, i.e. about 970 participants mixed per core with 3
//! talkers (target >= 400); the decode of each sending listener dominated. With the
//! silent-frame skip (`SILENT_OPUS_BYTES`): 400p_3t_all_send 0.62 ms, 1000p_3t_all_send
//! 1.37 ms (docs/benchmarks.md).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use codecs::opus::{Encoder, FRAME_SAMPLES};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mesh::{Mesh, MeshConfig, Remote, TxBatch};
use testkit::conference::{self, Channel};
use transcoder::Transcoder;

const CONF: u32 = 1;

fn addr(p: u32) -> SocketAddr {
    SocketAddr::from(([10, (p >> 16) as u8, (p >> 8) as u8, p as u8], 5000))
}

struct Room {
    mesh: Mesh<Transcoder>,
    now: Instant,
    talkers: u32,
    /// Listeners who also send (Opus-encoded silence, no DTX): each costs a decode.
    silent_senders: u32,
    silence: Vec<u8>,
    packets: Vec<Vec<Vec<u8>>>,
    frame: usize,
    tx: TxBatch,
}

impl Room {
    fn new(participants: u32, talkers: u32) -> Room {
        Self::with_senders(participants, talkers, 0)
    }

    fn with_senders(participants: u32, talkers: u32, silent_senders: u32) -> Room {
        let t0 = Instant::now();
        let cfg = MeshConfig {
            tick: Duration::from_millis(20),
            max_participants: participants as usize,
            tx_packets: participants as usize * 2,
            tx_bytes: participants as usize * 400,
            ..MeshConfig::default()
        };
        let mut mesh = Mesh::new(t0, cfg);
        conference::create(&mut mesh, t0, CONF, Transcoder::new());
        for p in 0..participants {
            let audio = [Channel::audio(1000 + p)];
            conference::join(&mut mesh, t0, CONF, p, Remote::Addr(addr(p)), &audio);
        }
        mesh.handle_tick(t0);
        // 50 pre-encoded packets per talker, replayed with fresh headers.
        let packets = (0..talkers)
            .map(|t| {
                let mut enc = Encoder::new().unwrap();
                let f = 440.0 + 220.0 * f64::from(t);
                (0..50u32)
                    .map(|k| {
                        let pcm: Vec<i16> = (0..FRAME_SAMPLES)
                            .map(|n| {
                                let x = (k as usize * FRAME_SAMPLES + n) as f64 / 48_000.0;
                                (6000.0 * (2.0 * std::f64::consts::PI * f * x).sin()) as i16
                            })
                            .collect();
                        enc.encode(&pcm).unwrap().to_vec()
                    })
                    .collect()
            })
            .collect();
        let silence = Encoder::new()
            .unwrap()
            .encode(&[0; FRAME_SAMPLES])
            .unwrap()
            .to_vec();
        let mut room = Room {
            mesh,
            now: t0,
            talkers,
            silent_senders: silent_senders.min(participants - talkers),
            silence,
            packets,
            frame: 0,
            tx: TxBatch::default(),
        };
        // Warm up: buffers primed, talk runs started, encoders created.
        for _ in 0..50 {
            room.tick();
        }
        room
    }

    /// One 20 ms period: each talker's packet arrives, then the mixing tick.
    fn tick(&mut self) {
        let k = self.frame;
        for t in 0..self.talkers {
            let payload = &self.packets[t as usize][k % 50];
            let mut p = Vec::with_capacity(12 + payload.len());
            p.extend_from_slice(&[0x80, 111]);
            p.extend_from_slice(&(k as u16).to_be_bytes());
            p.extend_from_slice(&((k as u32) * 960).to_be_bytes());
            p.extend_from_slice(&(1000 + t).to_be_bytes());
            p.extend_from_slice(payload);
            self.mesh.handle_datagram(self.now, addr(t), &p);
        }
        let mut p = Vec::with_capacity(12 + self.silence.len());
        for l in self.talkers..self.talkers + self.silent_senders {
            p.clear();
            p.extend_from_slice(&[0x80, 111]);
            p.extend_from_slice(&(k as u16).to_be_bytes());
            p.extend_from_slice(&((k as u32) * 960).to_be_bytes());
            p.extend_from_slice(&(1000 + l).to_be_bytes());
            p.extend_from_slice(&self.silence);
            self.mesh.handle_datagram(self.now, addr(l), &p);
        }
        self.mesh.handle_tick(self.now);
        self.mesh.poll_transmit(&mut self.tx);
        self.tx.clear();
        while self.mesh.poll_event().is_some() {}
        self.now += Duration::from_millis(20);
        self.frame += 1;
    }
}

fn tick_at_scale(c: &mut Criterion) {
    let mut g = c.benchmark_group("tick");
    g.sample_size(20);
    let mut room = Room::new(1000, 3);
    g.bench_function("1000p_3t", |b| b.iter(|| room.tick()));
    // Everyone sends: 3 talkers and 397 listeners sending encoded silence (no DTX).
    let mut room = Room::with_senders(400, 3, 397);
    g.bench_function("400p_3t_all_send", |b| b.iter(|| room.tick()));
    let mut room = Room::with_senders(1000, 3, 997);
    g.bench_function("1000p_3t_all_send", |b| b.iter(|| room.tick()));
    g.finish();
}

fn marginal(c: &mut Criterion) {
    let mut g = c.benchmark_group("listeners");
    g.sample_size(20);
    for listeners in [100u32, 200, 400] {
        let mut room = Room::new(listeners + 3, 3);
        g.bench_with_input(
            BenchmarkId::from_parameter(listeners),
            &listeners,
            |b, _| b.iter(|| room.tick()),
        );
    }
    g.finish();
    let mut g = c.benchmark_group("talkers");
    g.sample_size(20);
    for talkers in [1u32, 3, 5] {
        let mut room = Room::new(100 + talkers, talkers);
        g.bench_with_input(BenchmarkId::from_parameter(talkers), &talkers, |b, _| {
            b.iter(|| room.tick())
        });
    }
    g.finish();
}

criterion_group!(benches, tick_at_scale, marginal);
criterion_main!(benches);
