//! Who is speaking, how loud, and who holds the floor; and last-N: only the N most recent
//! speakers' video is forwarded.
//!
//! In a large conference nobody watches everyone, and forwarding every camera to every
//! receiver costs N^2 bandwidth. Speech is what people look at, so the reflector ranks
//! sources by when they last started talking, detected without decoding from the RFC 6464
//! audio level each sender puts in its audio packets (or, for a sender without it, from
//! whether its encoder spent bits on the frame), and forwards video from the first N only.
//!
//! The same detection feeds every client's indicators in reflect mode: talk-run edges
//! become `speaking` notices, each talker's peak level a `level` line once per
//! [`talk::LEVEL_PERIOD`], and the most recent talker, after the hysteresis of
//! [`talk::DominantSpeaker`], the `dominant` speaker. A muted member is never reported as
//! talking.

use mesh::FastMap as HashMap;
use std::time::Instant;

use mesh::talk::{self, DominantSpeaker, LevelMeter, Levels, Run, TalkDetector, TalkEdge};
use mesh::{Hasher, ParticipantId, PathOut, RtpView};

use crate::video::RateMeter;

/// The RFC 8285 one-byte extension id senders use for the audio level unless told otherwise
/// (what browsers offer first for `urn:ietf:params:rtp-hdrext:ssrc-audio-level`).
pub const DEFAULT_AUDIO_LEVEL_ID: u8 = 1;

/// Opus payloads up to this size carry no signal (libopus codes digital silence and DTX
/// in 1-3 bytes): a sender without the level extension is talking when it sends more.
const SILENT_PAYLOAD: usize = 3;

/// One source's speech state.
#[derive(Debug, Default)]
struct Speaker {
    detector: TalkDetector,
    meter: LevelMeter,
    muted: bool,
    /// Its audio as sent on, with each packet's share of the wire (see [`WIRE_OVERHEAD`]).
    rate: RateMeter,
    /// In [`LastN::active`].
    listed: bool,
}

/// Bytes each packet costs on the wire beyond its RTP: IPv4 and UDP headers, an SRTP tag
/// and a transport-wide sequence number. Receivers' estimates count what arrives, so a
/// layer's budget leaves this much of the audio's room.
const WIRE_OVERHEAD: usize = 28 + 16 + 8;

#[derive(Debug)]
pub(crate) struct LastN {
    /// `None`: every source's video is forwarded.
    n: Option<usize>,
    ext_id: u8,
    /// Members by when they last started talking, most recent first; members who have not
    /// talked follow in join order.
    order: Vec<ParticipantId>,
    speakers: HashMap<ParticipantId, Speaker>,
    /// The speakers that sent audio lately or hold a run: the only ones a tick looks at,
    /// so a room of thousands (a linked server's mirrored members among them) costs its
    /// talkers, not its size, every tick.
    active: Vec<ParticipantId>,
    /// Talk edges not yet reported.
    edges: Vec<(ParticipantId, bool)>,
    /// When the next level batch is due.
    next_levels: Option<Instant>,
    levels: Levels,
    dominant: DominantSpeaker,
    /// Report levels and the dominant speaker (the mixer does it in mix rooms).
    indicators: bool,
}

impl LastN {
    pub(crate) fn new(hasher: Hasher) -> Self {
        Self {
            n: None,
            ext_id: DEFAULT_AUDIO_LEVEL_ID,
            order: Vec::new(),
            speakers: hasher.map(),
            active: Vec::new(),
            edges: Vec::new(),
            next_levels: None,
            levels: Levels::new(),
            dominant: DominantSpeaker::new(),
            indicators: true,
        }
    }

    pub(crate) fn set_indicators(&mut self, on: bool) {
        self.indicators = on;
    }

    pub(crate) fn set(&mut self, n: Option<usize>, ext_id: u8) {
        self.n = n;
        self.ext_id = ext_id;
    }

    /// Follows the membership; newcomers rank last. Only on membership changes.
    pub(crate) fn sync(&mut self, members: &[ParticipantId]) {
        self.order.retain(|p| members.contains(p));
        for &m in members {
            if !self.order.contains(&m) {
                self.order.push(m);
            }
        }
        let dominant = &mut self.dominant;
        self.speakers.retain(|p, _| {
            let stays = members.contains(p);
            if !stays {
                dominant.forget(*p);
            }
            stays
        });
        for &m in members {
            self.speakers.entry(m).or_default();
        }
        let speakers = &self.speakers;
        self.active.retain(|p| speakers.contains_key(p));
        // Room for everyone, so listing a speaker never allocates on the packet path.
        self.active.reserve(members.len());
        self.edges.reserve(2 * members.len());
    }

    /// Whether `src`'s video is forwarded now.
    pub(crate) fn forwards(&self, src: ParticipantId) -> bool {
        match self.n {
            None => true,
            Some(n) => self.order.iter().take(n).any(|&p| p == src),
        }
    }

    /// The audio every source sends on (bits/s), and `r`'s own part of it: what `r` gets
    /// is the first less the second. Unmuted sources only (a muted one is not forwarded).
    pub(crate) fn audio_rates(&self, now: Instant) -> (u64, impl Fn(ParticipantId) -> u64 + '_) {
        let live = move |s: &Speaker| !s.muted && s.rate.is_active(now);
        let total = self
            .active
            .iter()
            .filter_map(|p| self.speakers.get(p))
            .filter(|s| live(s))
            .map(|s| s.rate.bits_per_sec)
            .sum();
        let own = move |r: ParticipantId| {
            self.speakers
                .get(&r)
                .filter(|s| live(s))
                .map_or(0, |s| s.rate.bits_per_sec)
        };
        (total, own)
    }

    /// Who started talking most recently and still talks.
    pub(crate) fn dominant(&self) -> Option<ParticipantId> {
        self.order.first().copied().filter(|p| {
            self.speakers
                .get(p)
                .is_some_and(|s| s.detector.run().is_some())
        })
    }

    /// Reads the audio level of `src`'s packet (one map lookup per packet). Returns `src`
    /// when it just started talking and so entered the forwarded set (its video needs a
    /// keyframe for its receivers), and the source's push-to-talk run, for smart duplex.
    pub(crate) fn observe(
        &mut self,
        now: Instant,
        src: ParticipantId,
        pkt: &RtpView<'_>,
    ) -> (Option<ParticipantId>, Option<Run>) {
        let Some(s) = self.speakers.get_mut(&src) else {
            return (None, None);
        };
        if s.muted {
            return (None, None);
        }
        if !s.listed {
            s.listed = true;
            self.active.push(src);
        }
        s.rate.add(now, pkt.len() + WIRE_OVERHEAD);
        let voice = match talk::audio_level(pkt, self.ext_id) {
            Some((_, level)) => {
                s.meter.add_rfc6464(level);
                level <= talk::LEVEL_VOICE_MAX
            }
            None => pkt.payload().len() > SILENT_PAYLOAD,
        };
        let edge = s.detector.observe(now, false, voice);
        let ptt_run = match s.detector.is_push_to_talk() {
            true => s.detector.run(),
            false => None,
        };
        let entered = match edge {
            Some(TalkEdge::Started(_)) => {
                self.edges.push((src, true));
                self.promote(src)
            }
            Some(TalkEdge::Stopped) => {
                self.edges.push((src, false));
                None
            }
            None => None,
        };
        (entered, ptt_run)
    }

    /// The run smart duplex applies to `receiver`: its push-to-talk run, if any.
    pub(crate) fn duplex_run(&self, receiver: ParticipantId) -> Option<Run> {
        self.speakers
            .get(&receiver)
            .and_then(|s| s.detector.duplex_run())
    }

    /// Push to talk (`talk on|off`): the run follows the control line, and a run's start
    /// ranks the source first. Its edges are announced by the control plane, not here.
    pub(crate) fn control(
        &mut self,
        now: Instant,
        src: ParticipantId,
        on: bool,
    ) -> Option<ParticipantId> {
        let s = self.speakers.entry(src).or_default();
        if !s.listed {
            s.listed = true;
            self.active.push(src);
        }
        match s.detector.control(now, on && !s.muted)? {
            TalkEdge::Started(_) => self.promote(src),
            TalkEdge::Stopped => None,
        }
    }

    /// A member muted or unmuted: a muted member's run ends and it is not heard talking
    /// until unmuted.
    pub(crate) fn mute(&mut self, now: Instant, src: ParticipantId, muted: bool) {
        let s = self.speakers.entry(src).or_default();
        s.muted = muted;
        if muted {
            s.meter.clear();
            if let Some(TalkEdge::Stopped) = s.detector.stop(now) {
                self.edges.push((src, false));
            }
        }
    }

    /// Moves `src` to the front; `Some(src)` when that brought it into the last-N set.
    fn promote(&mut self, src: ParticipantId) -> Option<ParticipantId> {
        let was_in = self.forwards(src);
        if let Some(i) = self.order.iter().position(|&p| p == src) {
            // Move to the front, keeping everyone else's order.
            self.order[..=i].rotate_right(1);
        }
        (!was_in).then_some(src)
    }

    /// Ends runs that went quiet and reports every edge as a `speaking` notice; once per
    /// level period, the talkers' levels and a change of dominant speaker.
    pub(crate) fn tick(&mut self, now: Instant, out: &mut PathOut<'_>) {
        let mut i = 0;
        while let Some(&p) = self.active.get(i) {
            let Some(s) = self.speakers.get_mut(&p) else {
                self.active.swap_remove(i);
                continue;
            };
            if let Some(TalkEdge::Stopped) = s.detector.expire(now) {
                self.edges.push((p, false));
            }
            // Quiet for a while and holding no run: off the list until its next packet.
            if s.detector.run().is_none() && !s.rate.is_active(now) {
                s.listed = false;
                s.meter.clear();
                self.active.swap_remove(i);
                continue;
            }
            i += 1;
        }
        for (p, on) in self.edges.drain(..) {
            out.speaking(p, on);
        }
        if !self.indicators || self.next_levels.is_some_and(|t| now < t) {
            return;
        }
        self.next_levels = Some(now + talk::LEVEL_PERIOD);
        self.levels.clear();
        for &p in &self.active {
            let Some(s) = self.speakers.get_mut(&p) else {
                continue;
            };
            let peak = s.meter.take();
            if let (Some(db), Some(_)) = (peak, s.detector.run()) {
                self.levels.push(p, db);
            }
        }
        out.levels(&self.levels);
        let latest = self.dominant().map(|p| {
            let voice = self
                .speakers
                .get(&p)
                .and_then(|s| s.detector.last_voice(now));
            (p, voice)
        });
        if let Some(p) = self.dominant.update(now, latest) {
            out.dominant(p);
        }
    }
}
