//! A worker engine on loopback with real participant sockets, shared by the engine tests.
#![allow(dead_code)]

pub mod control;

use mediaserver::io::{IoKind, IoOptions};
use mediaserver::worker::{Engine, EngineConfig, WorkerCounters};
use mesh::{Command, MediaKind, MeshConfig, Remote};
use reflector::Reflector;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const CONF: u32 = 7;

/// An RTP packet whose payload encodes `ssrc`, `seq` and each byte's position, so a
/// corrupted or mixed-up forward is caught.
pub fn rtp(ssrc: u32, seq: u16, len: usize) -> Vec<u8> {
    let ts = u32::from(seq) * 960;
    testkit::packet::Rtp::new(ssrc)
        .pt(111)
        .seq(seq)
        .ts(ts)
        .size(len)
        .tagged()
        .build()
}

pub struct Rig {
    pub engine: Engine<Reflector>,
    pub counters: Arc<WorkerCounters>,
    pub addr: SocketAddr,
    /// Participant `i + 1`'s socket.
    pub peers: Vec<UdpSocket>,
}

impl Rig {
    /// An engine with `kind` and `gso`, and one conference of `people` audio participants.
    pub fn new(kind: IoKind, gso: bool, people: u32) -> Rig {
        let socket = mediaserver::io::bind(([127, 0, 0, 1], 0).into()).unwrap();
        let mesh = MeshConfig::default();
        let cfg = EngineConfig {
            io: IoOptions {
                kind,
                gso,
                tx_packets: mesh.tx_packets,
            },
            mesh,
        };
        let counters = Arc::new(WorkerCounters::default());
        let mut engine = Engine::new(socket, cfg, counters.clone());
        let addr = engine.local_addr().unwrap();
        engine.command(Command::CreateConference {
            conf: CONF,
            path: Box::new(Reflector::new()),
        });
        let mut peers = vec![];
        for id in 1..=people {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            engine.command(Command::AddParticipant {
                conf: CONF,
                participant: id,
            });
            engine.command(Command::SetChannel {
                conf: CONF,
                participant: id,
                kind: MediaKind::Audio,
                remote: Remote::Addr(s.local_addr().unwrap()),
                ssrc: id,
                clock_rate: 48_000,
            });
            peers.push(s);
        }
        let mut rig = Rig {
            engine,
            counters,
            addr,
            peers,
        };
        // The first tick is due at once and applies the commands.
        rig.engine.turn(Duration::ZERO).unwrap();
        assert_eq!(rig.engine.mesh().participant_count(), people as usize);
        rig
    }

    /// Participant `id` sends `pkt` to the worker.
    pub fn send(&self, id: u32, pkt: &[u8]) {
        self.peers[id as usize - 1].send_to(pkt, self.addr).unwrap();
    }

    /// Turns the engine until it has read `datagrams` more or `limit` passes.
    pub fn pump(&mut self, datagrams: u64, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        let mut got = 0;
        while got < datagrams && Instant::now() < deadline {
            got += self.engine.turn(Duration::from_millis(20)).unwrap() as u64;
        }
        got
    }

    /// Reads `n` datagrams at participant `id`.
    pub fn receive(&self, id: u32, n: usize) -> Vec<Vec<u8>> {
        let mut buf = [0u8; 4096];
        (0..n)
            .map(|_| {
                let (len, from) = self.peers[id as usize - 1]
                    .recv_from(&mut buf)
                    .unwrap_or_else(|e| panic!("participant {id}: {e}"));
                assert_eq!(from, self.addr);
                buf[..len].to_vec()
            })
            .collect()
    }
}

/// The backend a worker asking for `kind` should end up with here.
pub fn expected_kind(kind: IoKind) -> IoKind {
    match (kind, mediaserver::io::probe_uring()) {
        (IoKind::Uring, Ok(())) => IoKind::Uring,
        _ => IoKind::Mmsg,
    }
}
