//! A reflector mesh on testkit's virtual-time network: VP8 video senders that answer
//! keyframe requests, receivers that record what arrives, and a downlink per receiver that a
//! test may impair. No sockets, no wall clock; maps keyed from a fixed seed, so a run repeats
//! exactly.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mesh::rtcp::{self, Rtcp};
use mesh::{rtp, Hasher, Mesh, MeshConfig, ParticipantId, Remote, RtpView, TxBatch};
use reflector::{Reflector, VideoCodec};
use testkit::conference::{self, Channel};
use testkit::net::{Fate, Net};
use testkit::packet::{vp8, Rtp};

pub const CONF: u32 = 9;
pub const VP8_PT: u8 = 96;
pub const TICK: Duration = Duration::from_millis(10);
/// 30 frames/s.
pub const FRAME: Duration = Duration::from_micros(33_333);
pub const PACKETS_PER_FRAME: u16 = 3;

pub fn addr(id: ParticipantId) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, id as u8], 5000))
}

pub fn video_ssrc(id: ParticipantId) -> u32 {
    0x5000 + id
}

pub fn audio_ssrc(id: ParticipantId) -> u32 {
    0x6000 + id
}

/// The seed of the sim's network and of its maps' keys.
pub const SEED: u64 = 0x5eed_2545_f491_4f6c;

/// An audio packet with an RFC 6464 level (0 loudest, 127 silence) under extension id 1.
pub fn audio_packet(ssrc: u32, seq: u16, level: u8) -> Vec<u8> {
    Rtp::new(ssrc)
        .pt(111)
        .seq(seq)
        .ts(u32::from(seq) * 960)
        .audio_level(1, level)
        .size(100)
        .fill(0x55)
        .build()
}

/// Whether `pkt` (RTP) starts a VP8 keyframe.
pub fn is_key(pkt: &[u8]) -> bool {
    let view = RtpView::parse(pkt).expect("RTP");
    reflector::keyframe::is_keyframe_start(VideoCodec::Vp8, view.payload())
}

/// One encoding of a camera.
pub struct Encoding {
    pub ssrc: u32,
    seq: u16,
    /// Encodings start their timestamps at different random points, as real encoders do.
    ts_base: u32,
    pub packets_per_frame: u16,
    pub size: usize,
    pub key_wanted: bool,
    pub keyframes_sent: u32,
    /// Its VP8 picture ID and TL0PICIDX, numbered from its own start as libwebrtc does.
    picture_id: u16,
    tl0: u8,
}

/// A VP8 payload start whose descriptor has a 15-bit picture ID, TL0PICIDX and TID.
fn vp8_with_ids(start: bool, key: bool, tid: u8, picture_id: u16, tl0: u8) -> Vec<u8> {
    let [hi, lo] = picture_id.to_be_bytes();
    let s = if start { 0x10 } else { 0 };
    let p = if key { 0x50 } else { 0x51 };
    vec![0x80 | s, 0xe0, 0x80 | hi, lo, tl0, (tid & 3) << 6, p]
}

/// A video sender: a frame every [`FRAME`] on each encoding, a keyframe every `gop` frames
/// or right after a keyframe request for that encoding reaches it.
pub struct Camera {
    pub id: ParticipantId,
    frame: u32,
    next: Instant,
    pub gop: u32,
    pub encodings: Vec<Encoding>,
    pub keyframes_sent: u32,
    /// Requests are ignored while set.
    pub deaf: bool,
    /// Two temporal layers: odd frames (never keyframes) are TL1, marked in the VP8
    /// descriptor.
    pub temporal: bool,
    /// VP8 descriptors carry a 15-bit picture ID and TL0PICIDX, as browsers send them.
    pub picture_ids: bool,
}

/// What one participant received.
#[derive(Default)]
pub struct Inbox {
    /// (arrival, packet) of media.
    pub media: Vec<(Instant, Vec<u8>)>,
    pub rtcp: Vec<(Instant, Vec<u8>)>,
}

pub struct Sim {
    pub mesh: Mesh<Reflector>,
    pub now: Instant,
    batch: TxBatch,
    pub cameras: Vec<Camera>,
    pub inbox: HashMap<ParticipantId, Inbox>,
    /// The downlinks, by receiver; ideal unless a test impairs one.
    pub net: Net<ParticipantId>,
    /// Media packets the downlinks dropped, per receiver.
    pub lost: HashMap<ParticipantId, Vec<u16>>,
    /// Every delivery in order: (arrival, receiver, packet).
    pub log: Vec<(Instant, ParticipantId, Vec<u8>)>,
    /// Participants sending audio every 20 ms, and whether they talk (level 10, or their
    /// entry in `levels`) or not (127).
    pub voices: HashMap<ParticipantId, bool>,
    /// The RFC 6464 level a talking participant sends, when not 10.
    pub levels: HashMap<ParticipantId, u8>,
    audio_seq: u16,
    ms: u64,
}

impl Sim {
    /// A conference of `ids`, each with a video channel; VP8 on [`VP8_PT`].
    pub fn new(ids: &[ParticipantId]) -> Self {
        Self::with(ids, |_| {})
    }

    /// Like [`Sim::new`], with the reflector set up further by `setup` first.
    pub fn with(ids: &[ParticipantId], setup: impl FnOnce(&mut Reflector)) -> Self {
        Self::seeded(ids, SEED, setup)
    }

    /// Like [`Sim::with`], with the network and the maps' keys from `seed`.
    pub fn seeded(ids: &[ParticipantId], seed: u64, setup: impl FnOnce(&mut Reflector)) -> Self {
        let now = Instant::now();
        let mut r = Reflector::with_hasher(Hasher::seeded(seed));
        r.set_video_codec(VP8_PT, VideoCodec::Vp8);
        setup(&mut r);
        let cfg = MeshConfig {
            hash_seed: Some(seed),
            ..MeshConfig::default()
        };
        let mut sim = Sim {
            mesh: Mesh::new(now, cfg),
            now,
            batch: TxBatch::with_capacity(1024, 1024 * 1500),
            cameras: Vec::new(),
            inbox: HashMap::new(),
            net: Net::new(seed),
            lost: HashMap::new(),
            log: Vec::new(),
            voices: HashMap::new(),
            levels: HashMap::new(),
            audio_seq: 0,
            ms: 0,
        };
        conference::create(&mut sim.mesh, now, CONF, r);
        for &id in ids {
            sim.join(id);
        }
        sim.mesh.handle_tick(now);
        sim
    }

    /// Queues `id`'s join with audio and video channels; applied at the next tick.
    pub fn join(&mut self, id: ParticipantId) {
        let channels = [
            Channel::audio(audio_ssrc(id)),
            Channel::video(video_ssrc(id)),
        ];
        let at = Remote::Addr(addr(id));
        conference::join(&mut self.mesh, self.now, CONF, id, at, &channels);
    }

    pub fn camera(&mut self, id: ParticipantId, gop: u32) {
        self.simulcast_camera(id, gop, &[(video_ssrc(id), PACKETS_PER_FRAME, 1000)]);
    }

    /// A camera with several encodings: (SSRC, packets per frame, packet size) each.
    pub fn simulcast_camera(
        &mut self,
        id: ParticipantId,
        gop: u32,
        encodings: &[(u32, u16, usize)],
    ) {
        self.cameras.push(Camera {
            id,
            frame: 0,
            next: self.now,
            gop,
            encodings: encodings
                .iter()
                .enumerate()
                .map(|(i, &(ssrc, packets_per_frame, size))| Encoding {
                    ssrc,
                    seq: 1000 + 10_000 * i as u16,
                    ts_base: 1_000_000 * i as u32,
                    packets_per_frame,
                    size,
                    key_wanted: false,
                    keyframes_sent: 0,
                    picture_id: 7_000u16.wrapping_mul(i as u16 + 1) & 0x7fff,
                    tl0: 50u8.wrapping_mul(i as u8 + 1),
                })
                .collect(),
            keyframes_sent: 0,
            deaf: false,
            temporal: false,
            picture_ids: false,
        });
    }

    /// Sends RTCP `data` from participant `id`.
    pub fn rtcp_from(&mut self, id: ParticipantId, data: &[u8]) {
        self.mesh.handle_datagram(self.now, addr(id), data);
        self.deliver();
    }

    /// Runs the network for `dt` in 1 ms steps.
    pub fn run(&mut self, dt: Duration) {
        let end = self.now + dt;
        while self.now < end {
            self.now += Duration::from_millis(1);
            self.step();
        }
    }

    fn step(&mut self) {
        let now = self.now;
        self.ms += 1;
        if self.ms % 20 == 0 {
            self.audio_seq = self.audio_seq.wrapping_add(1);
            let mut voices: Vec<_> = self.voices.iter().map(|(&p, &t)| (p, t)).collect();
            voices.sort_unstable();
            for (id, talking) in voices {
                let level = match talking {
                    true => self.levels.get(&id).copied().unwrap_or(10),
                    false => 127,
                };
                let pkt = audio_packet(audio_ssrc(id), self.audio_seq, level);
                self.mesh.handle_datagram(now, addr(id), &pkt);
                self.deliver();
            }
        }
        for i in 0..self.cameras.len() {
            if self.cameras[i].next > now {
                continue;
            }
            let c = &mut self.cameras[i];
            c.next += FRAME;
            let ts = c.frame.wrapping_mul(3000);
            let gop_key = c.frame % c.gop == 0;
            c.frame += 1;
            let id = c.id;
            let mut pkts = Vec::new();
            for e in &mut c.encodings {
                let key = e.key_wanted || gop_key;
                e.key_wanted = false;
                e.keyframes_sent += u32::from(key);
                c.keyframes_sent += u32::from(key);
                let tid = match c.temporal {
                    true if !key => Some((c.frame % 2) as u8),
                    true => Some(0),
                    false => None,
                };
                if tid.unwrap_or(0) == 0 {
                    e.tl0 = e.tl0.wrapping_add(1);
                }
                for k in 0..e.packets_per_frame {
                    let payload = match c.picture_ids {
                        true => vp8_with_ids(k == 0, key, tid.unwrap_or(0), e.picture_id, e.tl0),
                        false => vp8(k == 0, key, tid),
                    };
                    let p = Rtp::new(e.ssrc)
                        .pt(VP8_PT)
                        .seq(e.seq.wrapping_add(k))
                        .ts(ts.wrapping_add(e.ts_base))
                        .payload(&payload)
                        .size(e.size)
                        .fill(0x77);
                    pkts.push(p.build());
                }
                e.picture_id = e.picture_id.wrapping_add(1) & 0x7fff;
                e.seq = e.seq.wrapping_add(e.packets_per_frame);
            }
            for pkt in pkts {
                self.mesh.handle_datagram(now, addr(id), &pkt);
                self.deliver();
            }
        }
        if self.mesh.poll_timeout() <= now {
            self.mesh.handle_tick(now);
            self.deliver();
        }
    }

    /// Puts what the mesh sent on its receivers' downlinks, and hands each receiver what has
    /// arrived by now.
    pub fn deliver(&mut self) {
        self.mesh.poll_transmit(&mut self.batch);
        for (dest, p) in self.batch.iter() {
            let id = ParticipantId::from(match dest.ip() {
                std::net::IpAddr::V4(v4) => v4.octets()[3],
                std::net::IpAddr::V6(_) => unreachable!("the sim is IPv4"),
            });
            let bytes = p.to_vec();
            let media = !rtp::is_rtcp(&bytes);
            let seq = RtpView::parse(&bytes).map(|v| v.sequence_number());
            if let (Fate::Lost | Fate::QueueFull, true, Ok(seq)) =
                (self.net.send(self.now, id, bytes), media, seq)
            {
                self.lost.entry(id).or_default().push(seq);
            }
        }
        self.batch.clear();
        while let Some(d) = self.net.poll(self.now) {
            let (id, bytes) = (d.link, d.packet);
            self.log.push((d.at, id, bytes.clone()));
            if rtp::is_rtcp(&bytes) {
                let media: Vec<u32> = rtcp::packets(&bytes)
                    .flatten()
                    .filter_map(|p| match p {
                        Rtcp::Pli { media, .. } => Some(media),
                        Rtcp::Fir(f) => f.entries().next().map(|e| e.0),
                        _ => None,
                    })
                    .collect();
                for c in self.cameras.iter_mut().filter(|c| !c.deaf) {
                    for e in &mut c.encodings {
                        e.key_wanted |= media.contains(&e.ssrc);
                    }
                }
                self.inbox.entry(id).or_default().rtcp.push((d.at, bytes));
            } else {
                self.inbox.entry(id).or_default().media.push((d.at, bytes));
            }
        }
    }

    /// Video SSRCs that reached `id` at or after `since`.
    pub fn video_sources(&self, id: ParticipantId, since: Instant) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .media(id)
            .iter()
            .filter(|(at, p)| *at >= since && p[1] & 0x7f == VP8_PT)
            .map(|(_, p)| RtpView::parse(p).expect("RTP").ssrc())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    pub fn media(&self, id: ParticipantId) -> &[(Instant, Vec<u8>)] {
        self.inbox.get(&id).map_or(&[], |i| &i.media[..])
    }

    pub fn rtcp(&self, id: ParticipantId) -> &[(Instant, Vec<u8>)] {
        self.inbox.get(&id).map_or(&[], |i| &i.rtcp[..])
    }

    pub fn reflector(&self) -> &Reflector {
        self.mesh.path(CONF).expect("the conference exists")
    }
}
