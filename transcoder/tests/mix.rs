//! The transcoder on a mesh with virtual time: mix-minus content, smart duplex over a talk
//! timeline, an impaired sender (on testkit's network), and hostile packets.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use codecs::g711::{Law, TelephonyDecoder, TelephonyEncoder};
use codecs::opus::{Decoder, Encoder, FRAME_SAMPLES, SAMPLE_RATE};
use mesh::{Command, Event, Mesh, MeshConfig, ParticipantId, Remote, TxBatch};
use testkit::conference::{self, Channel};
use testkit::net::{Impairments, Net};
use testkit::packet::Rtp;
use transcoder::Transcoder;

const CONF: u32 = 1;
const TICK: Duration = Duration::from_millis(10);

fn addr(p: ParticipantId) -> SocketAddr {
    format!("10.0.0.{p}:5000").parse().unwrap()
}

fn ssrc(p: ParticipantId) -> u32 {
    1000 + p
}

/// One simulated client: a tone, an encoder, a talk schedule, a recording.
struct Client {
    id: ParticipantId,
    freq: f64,
    /// Talk intervals in seconds; None: talks all the time without push to talk.
    talk: Option<Vec<(f64, f64)>>,
    talking: bool,
    enc: Encoder,
    dec: Decoder,
    /// A telephony endpoint: G.711 both ways.
    g711: Option<(TelephonyEncoder, TelephonyDecoder)>,
    seq: u16,
    ts: u32,
    phase: u64,
    /// Received audio, one 20 ms frame per received packet, stamped with its arrival time.
    rec: Vec<(f64, Vec<i16>)>,
    /// Until this time the client sends Opus-encoded digital silence instead of its tone
    /// (a listener without DTX).
    quiet_until: f64,
}

impl Client {
    fn new(id: ParticipantId, freq: f64, talk: Option<Vec<(f64, f64)>>) -> Self {
        Self {
            id,
            freq,
            talk,
            talking: false,
            enc: Encoder::new().unwrap(),
            dec: Decoder::new().unwrap(),
            g711: None,
            seq: 0,
            ts: 0,
            phase: 0,
            rec: Vec::new(),
            quiet_until: 0.0,
        }
    }

    fn telephony(mut self, law: Law) -> Self {
        self.g711 = Some((
            TelephonyEncoder::new(law).unwrap(),
            TelephonyDecoder::new(law).unwrap(),
        ));
        self
    }

    fn frame_ts(&self) -> u32 {
        if self.g711.is_some() {
            160
        } else {
            960
        }
    }

    fn wants_talk(&self, t: f64) -> bool {
        match &self.talk {
            None => true,
            Some(s) => s.iter().any(|&(a, b)| a <= t && t < b),
        }
    }

    /// One 20 ms packet: the tone while talking, else nothing.
    fn packet(&mut self, t: f64) -> Option<Vec<u8>> {
        if !self.wants_talk(t) {
            self.ts = self.ts.wrapping_add(self.frame_ts());
            self.phase += FRAME_SAMPLES as u64;
            return None;
        }
        let gain = if t < self.quiet_until { 0.0 } else { 1.0 };
        let pcm: Vec<i16> = (0..FRAME_SAMPLES as u64)
            .map(|n| {
                let x = (self.phase + n) as f64 / f64::from(SAMPLE_RATE);
                (gain * 8000.0 * (2.0 * std::f64::consts::PI * self.freq * x).sin()) as i16
            })
            .collect();
        self.phase += FRAME_SAMPLES as u64;
        let (pt, payload) = match self.g711.as_mut() {
            Some((e, _)) => (e.law().payload_type(), e.encode(&pcm).unwrap().to_vec()),
            None => (111, self.enc.encode(&pcm).unwrap().to_vec()),
        };
        let p = Rtp::new(ssrc(self.id))
            .pt(pt)
            .seq(self.seq)
            .ts(self.ts)
            .payload(&payload)
            .build();
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(self.frame_ts());
        Some(p)
    }

    /// Level of `freq` in dBFS over the recording between `from` and `to` seconds.
    fn level(&self, freq: f64, from: f64, to: f64) -> f64 {
        let pcm: Vec<i16> = self
            .rec
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .flat_map(|(_, f)| f.iter().copied())
            .collect();
        goertzel_dbfs(&pcm, freq)
    }
}

/// Level of one frequency in dBFS (a full-scale sine reads 0), by the Goertzel algorithm
/// over the whole slice.
fn goertzel_dbfs(x: &[i16], freq: f64) -> f64 {
    if x.is_empty() {
        return -200.0;
    }
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(SAMPLE_RATE);
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = f64::from(v) / 32768.0 + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - c * s1 * s2;
    let amp = 2.0 * power.sqrt() / x.len() as f64;
    20.0 * amp.max(1e-10).log10()
}

struct Sim {
    mesh: Mesh<Transcoder>,
    t0: Instant,
    now: Instant,
    clients: Vec<Client>,
    tx: TxBatch,
    events: Vec<(f64, Event)>,
    /// The senders' uplinks to the mesh, by participant; ideal unless a test impairs one.
    net: Net<ParticipantId>,
}

impl Sim {
    fn new(clients: Vec<Client>) -> Self {
        Self::with(clients, Transcoder::new())
    }

    fn with(clients: Vec<Client>, path: Transcoder) -> Self {
        let t0 = Instant::now();
        let mut mesh = Mesh::new(t0, MeshConfig::default());
        conference::create(&mut mesh, t0, CONF, path);
        for c in &clients {
            let audio = [Channel::audio(ssrc(c.id)).at(SAMPLE_RATE)];
            conference::join(&mut mesh, t0, CONF, c.id, Remote::Addr(addr(c.id)), &audio);
        }
        mesh.handle_tick(t0);
        Self {
            mesh,
            t0,
            now: t0,
            clients,
            tx: TxBatch::default(),
            events: Vec::new(),
            net: Net::new(7),
        }
    }

    fn secs(&self) -> f64 {
        (self.now - self.t0).as_secs_f64()
    }

    fn run(&mut self, seconds: f64) {
        let steps = (seconds / TICK.as_secs_f64()).round() as u64;
        for step in 0..steps {
            let t = self.secs();
            if step % 2 == 0 {
                for i in 0..self.clients.len() {
                    let id = self.clients[i].id;
                    // Push to talk edges go over the control line (no delay here).
                    if self.clients[i].talk.is_some() {
                        let want = self.clients[i].wants_talk(t);
                        if want != self.clients[i].talking {
                            self.clients[i].talking = want;
                            self.mesh.handle_command(
                                self.now,
                                Command::Talk {
                                    conf: CONF,
                                    participant: id,
                                    on: want,
                                },
                            );
                        }
                    }
                    if let Some(p) = self.clients[i].packet(t) {
                        self.net.send(self.now, id, p);
                    }
                }
            }
            // What arrived since the last step is handled at this step's time.
            let now = self.now;
            while let Some(d) = self.net.poll(now) {
                self.mesh.handle_datagram(now, addr(d.link), &d.packet);
            }
            self.mesh.handle_tick(now);
            while let Some(ev) = self.mesh.poll_event() {
                self.events.push((t, ev));
            }
            self.mesh.poll_transmit(&mut self.tx);
            for (dest, pkt) in self.tx.iter() {
                let bytes = pkt.to_vec();
                let c = self
                    .clients
                    .iter_mut()
                    .find(|c| addr(c.id) == dest)
                    .expect("sent only to members");
                let pcm = match (bytes[1] & 0x7f, c.g711.as_mut()) {
                    (111, _) => c.dec.decode(&bytes[12..]).unwrap().to_vec(),
                    (pt, Some((_, d))) if pt == d.law().payload_type() => {
                        d.decode(&bytes[12..]).unwrap().to_vec()
                    }
                    (pt, _) => panic!("client {} got payload type {pt}", c.id),
                };
                c.rec.push((t, pcm));
            }
            self.tx.clear();
            self.now += TICK;
        }
    }

    fn client(&self, id: ParticipantId) -> &Client {
        self.clients.iter().find(|c| c.id == id).unwrap()
    }
}

#[test]
fn each_hears_the_others_not_itself() {
    let mut sim = Sim::new(vec![
        Client::new(1, 440.0, None),
        Client::new(2, 660.0, None),
        Client::new(3, 880.0, None),
    ]);
    sim.run(3.0);
    let tones = [(1, 440.0), (2, 660.0), (3, 880.0)];
    for &(me, _) in &tones {
        let c = sim.client(me);
        // One packet per 20 ms for each receiver.
        assert!(c.rec.len() >= 140, "{me}: {} packets", c.rec.len());
        for &(other, f) in &tones {
            let l = c.level(f, 1.0, 3.0);
            if other == me {
                assert!(l <= -50.0, "{me} hears itself at {l:.1} dBFS");
            } else {
                assert!(l >= -35.0, "{me} hears {other} at {l:.1} dBFS");
            }
        }
    }
    let st = sim.mesh.stats();
    assert_eq!(st.total_drops(), 0, "{st:?}");
    // Speaking was announced for each.
    for me in 1..=3 {
        assert!(sim.events.iter().any(|(_, e)| matches!(
            e,
            Event::Speaking { participant, on: true, .. } if *participant == me
        )));
    }
}

/// A PCMU and a PCMA endpoint with an Opus one: each hears the others in its own codec.
#[test]
fn telephony_endpoints_hear_and_are_heard() {
    let mut sim = Sim::new(vec![
        Client::new(1, 440.0, None),
        Client::new(2, 660.0, None).telephony(Law::Mu),
        Client::new(3, 880.0, None).telephony(Law::A),
    ]);
    sim.run(3.0);
    let tones = [(1, 440.0), (2, 660.0), (3, 880.0)];
    for &(me, _) in &tones {
        let c = sim.client(me);
        assert!(c.rec.len() >= 140, "{me}: {} packets", c.rec.len());
        for &(other, f) in &tones {
            let l = c.level(f, 1.0, 3.0);
            if other == me {
                assert!(l <= -45.0, "{me} hears itself at {l:.1} dBFS");
            } else {
                assert!(l >= -35.0, "{me} hears {other} at {l:.1} dBFS");
            }
        }
    }
}

/// The timeline: A talks 0-8 s, B 3-6 s, C 4-8 s, all by push to talk.
#[test]
fn smart_duplex_timeline() {
    let mut sim = Sim::new(vec![
        Client::new(1, 440.0, Some(vec![(0.0, 8.0)])),
        Client::new(2, 660.0, Some(vec![(3.0, 6.0)])),
        Client::new(3, 880.0, Some(vec![(4.0, 8.0)])),
    ]);
    sim.run(9.0);
    let b = sim.client(2);
    let before = b.level(440.0, 1.0, 3.0);
    assert!(before >= -35.0, "B hears A before talking: {before:.1}");
    let during = b.level(440.0, 3.5, 6.0);
    assert!(
        during <= -50.0,
        "B must not hear A while B talks: {during:.1}"
    );
    let c = b.level(880.0, 4.5, 6.0);
    assert!(c >= -35.0, "B hears C, who began during B's run: {c:.1}");
    let after = b.level(440.0, 6.5, 8.0);
    assert!(after >= -35.0, "A resumes for B after B stops: {after:.1}");
    // A hears B's interruption; C (talking since 4 s) does not hear A or B meanwhile.
    let a = sim.client(1);
    assert!(a.level(660.0, 3.5, 6.0) >= -35.0);
    let cc = sim.client(3);
    assert!(cc.level(440.0, 4.5, 8.0) <= -50.0);
    assert!(cc.level(660.0, 4.5, 6.0) <= -50.0);
    // Speaking edges for B at about 3 s and 6 s.
    let b_edges: Vec<(f64, bool)> = sim
        .events
        .iter()
        .filter_map(|(t, e)| match e {
            Event::Speaking {
                participant: 2, on, ..
            } => Some((*t, *on)),
            _ => None,
        })
        .collect();
    assert_eq!(b_edges.len(), 2, "{b_edges:?}");
    assert!(b_edges[0].1 && (b_edges[0].0 - 3.0).abs() < 0.1);
    assert!(!b_edges[1].1 && (b_edges[1].0 - 6.0).abs() < 0.1);
}

/// A sender with 30 ms of jitter and 5% loss: the listener's audio of it has no silent gap
/// longer than 60 ms.
#[test]
fn impaired_sender_stays_continuous() {
    let mut sim = Sim::new(vec![
        Client::new(1, 440.0, None),
        Client::new(2, 660.0, Some(vec![])),
    ]);
    sim.net.set(
        1,
        Impairments {
            jitter: Duration::from_millis(30),
            loss: 5.0,
            ..Impairments::default()
        },
    );
    sim.run(6.0);
    let b = sim.client(2);
    // Walk B's recording in 20 ms frames after warm-up; a frame whose 440 Hz is below
    // -40 dBFS counts as silent.
    let mut gap = 0u32;
    let mut worst = 0u32;
    for (t, f) in &b.rec {
        if *t < 1.0 {
            continue;
        }
        if goertzel_dbfs(f, 440.0) < -40.0 {
            gap += 20;
            worst = worst.max(gap);
        } else {
            gap = 0;
        }
    }
    assert!(worst <= 60, "silent gap of {worst} ms");
    let js = sim.mesh.path(CONF).unwrap().jitter_stats(1).unwrap();
    assert!(js.concealed + js.fec + js.late > 0, "{js:?}");
    let (_, target) = sim.mesh.path(CONF).unwrap().jitter_depth(1).unwrap();
    assert!((30..=200).contains(&target), "target {target}");
}

/// Malformed, truncated and corrupt Opus, absurd timestamps and foreign payload types never
/// panic the mixer: they are counted and dropped, and the others' audio goes on.
#[test]
fn hostile_packets_are_counted_and_dropped() {
    let mut sim = Sim::new(vec![
        Client::new(1, 440.0, None),
        Client::new(2, 660.0, Some(vec![])),
    ]);
    sim.run(1.0);
    let head = |pt: u8, seq: u16, ts: u32| Rtp::new(ssrc(2)).pt(pt).seq(seq).ts(ts).build();
    let now = sim.now;
    let mut hostile: Vec<Vec<u8>> = Vec::new();
    // Empty payload, a code-3 TOC with no count, random garbage, absurd timestamps,
    // another payload type, a truncated header.
    hostile.push(head(111, 1, 0));
    let mut p = head(111, 2, 960);
    p.push(0x03);
    hostile.push(p);
    for k in 0..20u32 {
        let mut p = head(111, 3 + k as u16, 960 * (2 + k));
        p.extend((0..(k * 37 % 200)).map(|i| (i * 31 + k) as u8));
        hostile.push(p);
    }
    for ts in [u32::MAX, 0x8000_0000, 123_456_789] {
        let mut p = head(111, 40, ts);
        p.extend_from_slice(&[0xf8, 0xff, 0xfe]);
        hostile.push(p);
    }
    let mut p = head(0, 50, 960 * 30);
    p.extend_from_slice(&[1, 2, 3]);
    hostile.push(p);
    hostile.push(vec![0x80, 111, 0]);
    for p in &hostile {
        sim.mesh.handle_datagram(now, addr(2), p);
    }
    sim.run(2.0);
    let tc = sim.mesh.path(CONF).unwrap();
    let js = tc.jitter_stats(2).unwrap();
    let st = tc.stats();
    assert!(js.malformed >= 1, "{js:?}");
    assert!(js.absurd >= 1, "{js:?}");
    assert!(st.foreign >= 1, "{st:?}");
    assert!(st.decode_errors >= 1, "{st:?}");
    assert!(sim.mesh.stats().drops(mesh::DropReason::Malformed) >= 1);
    // A's tone still reaches B.
    assert!(sim.client(2).level(440.0, 1.5, 3.0) >= -35.0);
}

/// Listeners sending encoded digital silence (no DTX) are not decoded, and one who starts
/// talking is still detected by its energy and heard.
#[test]
fn silent_senders_are_skipped_and_talk_is_still_detected() {
    let mut quiet = Client::new(2, 660.0, None);
    quiet.quiet_until = 100.0;
    let mut late = Client::new(3, 880.0, None);
    late.quiet_until = 1.5;
    let mut sim = Sim::new(vec![Client::new(1, 440.0, None), quiet, late]);
    sim.run(3.0);
    let st = sim.mesh.path(CONF).unwrap().stats();
    assert!(st.silence_skipped > 50, "{st:?}");
    let a = sim.client(1);
    assert!(
        a.level(880.0, 2.0, 3.0) >= -35.0,
        "the late talker is heard"
    );
    assert!(a.level(880.0, 0.5, 1.4) <= -50.0);
    assert!(a.level(660.0, 0.5, 3.0) <= -50.0);
    let b = sim.client(2);
    assert!(b.level(440.0, 0.5, 3.0) >= -35.0);
    assert!(b.level(880.0, 2.0, 3.0) >= -35.0);
    let spoke = |p: ParticipantId| {
        sim.events
            .iter()
            .any(|(_, e)| matches!(e, Event::Speaking { participant, on: true, .. } if *participant == p))
    };
    assert!(!spoke(2), "a silent sender never talks");
    assert!(spoke(3), "the late talker's run is detected");
}

/// Moderator mute in the mixer: while 2 is muted the others lose its tone and keep each
/// other's, its talk run ends, and nothing of it is buffered; unmuted, it is back.
#[test]
fn a_muted_member_is_left_out_of_every_mix() {
    let mut sim = Sim::new(vec![
        Client::new(1, 440.0, None),
        Client::new(2, 660.0, None),
        Client::new(3, 880.0, None),
    ]);
    sim.run(2.0);
    let mute = |sim: &mut Sim, muted: bool| {
        let now = sim.now;
        sim.mesh.handle_command(
            now,
            Command::Mute {
                conf: CONF,
                participant: 2,
                muted,
            },
        );
    };
    mute(&mut sim, true);
    sim.run(3.0);
    assert!(sim.mesh.path(CONF).unwrap().is_muted(2));
    mute(&mut sim, false);
    sim.run(3.0);
    for me in [1, 3] {
        let c = sim.client(me);
        let before = c.level(660.0, 1.0, 2.0);
        let muted = c.level(660.0, 2.5, 5.0);
        let after = c.level(660.0, 6.0, 8.0);
        assert!(before >= -35.0, "{me} hears 2 before: {before:.1}");
        assert!(muted <= -50.0, "{me} hears 2 while muted: {muted:.1}");
        assert!(after >= -35.0, "{me} hears 2 again: {after:.1}");
        let other = if me == 1 { 880.0 } else { 440.0 };
        let kept = c.level(other, 2.5, 5.0);
        assert!(kept >= -35.0, "{me} keeps the other talker: {kept:.1}");
    }
    // 2 stopped talking at the mute (and never while muted), and talked again after.
    let speaking: Vec<(f64, bool)> = sim
        .events
        .iter()
        .filter_map(|(t, e)| match e {
            Event::Speaking {
                participant: 2, on, ..
            } => Some((*t, *on)),
            _ => None,
        })
        .collect();
    assert!(
        speaking
            .iter()
            .any(|&(t, on)| !on && (2.0..2.1).contains(&t)),
        "{speaking:?}"
    );
    assert!(
        !speaking
            .iter()
            .any(|&(t, on)| on && (2.1..5.0).contains(&t)),
        "{speaking:?}"
    );
    assert!(
        speaking.iter().any(|&(t, on)| on && t >= 5.0),
        "{speaking:?}"
    );
    assert!(sim.mesh.path(CONF).unwrap().stats().muted > 100);
    // Muted, it was not reported as a talker either.
    let levels_of_2 = sim
        .events
        .iter()
        .filter(|(t, _)| (2.2..5.0).contains(t))
        .filter(|(_, e)| matches!(e, Event::Levels { levels, .. } if levels.iter().any(|(p, _)| p == 2)))
        .count();
    assert_eq!(levels_of_2, 0);
}

/// Levels of the talkers come at most every 200 ms, and the dominant speaker follows a
/// change of talker within a second (push to talk: 1 talks 0-3 s, 2 from 3 s).
#[test]
fn levels_and_the_dominant_speaker() {
    let mut sim = Sim::new(vec![
        Client::new(1, 440.0, Some(vec![(0.0, 3.0)])),
        Client::new(2, 660.0, Some(vec![(3.0, 6.0)])),
        Client::new(3, 880.0, Some(vec![])),
    ]);
    sim.run(6.0);
    let batches: Vec<(f64, Vec<(u32, i8)>)> = sim
        .events
        .iter()
        .filter_map(|(t, e)| match e {
            Event::Levels { levels, .. } => Some((*t, levels.iter().collect())),
            _ => None,
        })
        .collect();
    for w in batches.windows(2) {
        assert!(w[1].0 - w[0].0 >= 0.19, "batches too close: {w:?}");
    }
    let of = |p: u32, from: f64, to: f64| {
        batches
            .iter()
            .filter(|(t, _)| (from..to).contains(t))
            .flat_map(|(_, l)| l.iter().filter(|(q, _)| *q == p).map(|(_, db)| *db))
            .collect::<Vec<i8>>()
    };
    // The tone is 8000/32768 peak: about -15 dBov.
    let one = of(1, 0.5, 2.9);
    assert!(one.len() >= 10, "{batches:?}");
    assert!(one.iter().all(|&db| (-20..=-10).contains(&db)), "{one:?}");
    assert!(of(2, 0.5, 2.9).is_empty());
    assert!(!of(2, 3.5, 6.0).is_empty());
    let dominant: Vec<(f64, u32)> = sim
        .events
        .iter()
        .filter_map(|(t, e)| match e {
            Event::Dominant { participant, .. } => Some((*t, *participant)),
            _ => None,
        })
        .collect();
    assert_eq!(dominant.first().map(|d| d.1), Some(1), "{dominant:?}");
    let to_two = dominant
        .iter()
        .find(|d| d.1 == 2)
        .expect("2 takes the floor");
    assert!(
        (3.0..4.0).contains(&to_two.0),
        "2 dominant at {:.2} s",
        to_two.0
    );
    assert_eq!(sim.mesh.path(CONF).unwrap().dominant_speaker(), Some(2));
}

/// Runs `sim` for `seconds`, taking the recording's mix after every tick: (mix time of each
/// take, all samples).
fn record(sim: &mut Sim, seconds: f64) -> (Vec<Instant>, Vec<i16>) {
    let (mut times, mut pcm) = (Vec::new(), Vec::new());
    // Two ticks at a time: clients send every other tick of a run.
    for _ in 0..(seconds / 0.02).round() as u64 {
        sim.run(0.02);
        let t = sim.mesh.path_mut(CONF).expect("the conference");
        if let Some((at, p)) = t.take_recorded() {
            times.push(at);
            pcm.extend_from_slice(&p);
        }
    }
    (times, pcm)
}

/// A recording gets the all-party mix (everyone who talks, no one left out), timed on the
/// mix clock; the members still get their mix-minus.
#[test]
fn a_recording_gets_the_all_party_mix() {
    let mut path = Transcoder::new();
    path.set_recording(true);
    let mut sim = Sim::with(
        vec![Client::new(1, 440.0, None), Client::new(2, 660.0, None)],
        path,
    );
    let (times, pcm) = record(&mut sim, 3.0);
    // Every 20 ms mix, once: 3 s less the first tick's.
    let frames = pcm.len() / FRAME_SAMPLES;
    assert!((148..=151).contains(&frames), "{frames} frames");
    assert_eq!(pcm.len() % FRAME_SAMPLES, 0);
    assert!(times.windows(2).all(|w| w[0] < w[1]));
    let last_second = &pcm[pcm.len() - SAMPLE_RATE as usize..];
    for hz in [440.0, 660.0] {
        let db = goertzel_dbfs(last_second, hz);
        assert!(db > -25.0, "{hz} Hz at {db} dBFS in the recording");
    }
    // Members are unaffected: each hears the other.
    assert!(sim.client(1).level(660.0, 2.0, 3.0) > -25.0);
    assert!(sim.client(2).level(440.0, 2.0, 3.0) > -25.0);
    // Stopped: nothing more is kept.
    sim.mesh.path_mut(CONF).unwrap().set_recording(false);
    let (_, after) = record(&mut sim, 0.5);
    assert!(after.is_empty());
}

/// A reflect room's recording mixer: the same all-party mix, and nothing sent or
/// reported (the reflector does both).
#[test]
fn a_recorder_only_mixer_sends_and_reports_nothing() {
    let mut sim = Sim::with(
        vec![Client::new(1, 440.0, None), Client::new(2, 660.0, None)],
        Transcoder::recorder_only(),
    );
    let (_, pcm) = record(&mut sim, 3.0);
    let last_second = &pcm[pcm.len() - SAMPLE_RATE as usize..];
    let levels: Vec<f64> = [440.0, 660.0]
        .iter()
        .map(|&hz| goertzel_dbfs(last_second, hz))
        .collect();
    assert!(
        levels.iter().all(|&db| db > -25.0),
        "{levels:?} of {} samples",
        pcm.len()
    );
    assert!(sim.client(1).rec.is_empty() && sim.client(2).rec.is_empty());
    assert!(sim.events.is_empty(), "{:?}", sim.events);
    assert_eq!(sim.mesh.path(CONF).unwrap().stats().packets_out, 0);
}

/// A reflect room's mixer for its single-stream endpoints: only they get a mix (each its
/// mix-minus); the others get nothing from it, and it reports nothing.
#[test]
fn a_mixer_for_some_members_sends_only_to_them() {
    let mut path = Transcoder::for_some();
    path.set_receivers(&[2]);
    let mut sim = Sim::with(
        vec![
            Client::new(1, 440.0, None),
            Client::new(2, 660.0, None),
            Client::new(3, 880.0, None),
        ],
        path,
    );
    sim.run(3.0);
    assert!(sim.client(1).rec.is_empty() && sim.client(3).rec.is_empty());
    let c2 = sim.client(2);
    assert!(c2.level(440.0, 2.0, 3.0) > -25.0);
    assert!(c2.level(880.0, 2.0, 3.0) > -25.0);
    assert!(c2.level(660.0, 2.0, 3.0) < -50.0, "not its own voice");
    assert!(sim.events.is_empty(), "{:?}", sim.events);
}
