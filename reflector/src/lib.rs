//! The reflector path (SFU) of a conference: forward media without decoding it.
//!
//! The mesh asks a [`mesh::Path`] which members receive each packet. The reflector answers
//! from a forwarding table, one receiver list per source and media kind, rebuilt only when the
//! membership changes. Keeping an explicit table (rather than "everyone but the sender"
//! computed per packet) is what later lets a receiver subscribe to a simulcast layer or be
//! thinned per source.
//!
//! Video gets the SFU's care: per-source keyframe gating and requests ([`video`]),
//! NACK answers from a retransmission cache ([`nack`]), and the RTCP it terminates
//! ([`feedback`]).

mod feedback;
/// Keyframe and droppable-frame detection, shared with the transcoder's depacketizers (one
/// implementation, in the light `rtpvideo` crate that links no codec library).
pub use rtpvideo::keyframe;
mod lastn;
pub mod nack;
mod picture_ids;
mod renumber;
mod simulcast;
mod video;

use mesh::FastMap as HashMap;
use std::time::Instant;

use mesh::talk;
use mesh::{
    Endpoint, Hasher, MediaKind, ParticipantId, Path, PathOut, ReceiverPrefs, Rewrite, RtpView,
};

pub use feedback::{
    Estimate, ReflectorStats, MAX_NACKED_PER_COMPOUND, REMB_FLOOR, REPORT_INTERVAL,
    SR_RELAY_INTERVAL,
};
pub use keyframe::VideoCodec;
use lastn::LastN;
pub use lastn::DEFAULT_AUDIO_LEVEL_ID;
use simulcast::Simulcast;
use video::VideoSource;
pub use video::{KeyframeMethod, KEYFRAME_INTERVAL, SFU_SSRC};

/// Who receives one source's media.
#[derive(Clone, Debug, Default)]
struct Entry {
    /// Indexed by [`MediaKind::index`].
    receivers: [Vec<ParticipantId>; 2],
}

/// The forwarding table of one conference.
#[derive(Debug)]
pub struct Reflector {
    /// The membership the table was built for; compared on every packet to spot changes.
    members: Vec<ParticipantId>,
    table: HashMap<ParticipantId, Entry>,
    rebuilds: u64,
    /// Video codec by RTP payload type; unset types are forwarded without keyframe gating.
    codecs: [Option<VideoCodec>; 128],
    /// Per video source; created at its first packet.
    video: HashMap<ParticipantId, VideoSource>,
    /// Sources that declared simulcast encodings; their video is routed here, not `video`.
    simulcast: HashMap<ParticipantId, Simulcast>,
    /// Receivers whose estimate is below what their video takes: they get half the frame
    /// rate (droppable frames left out), see [`keyframe::is_droppable`].
    thinned: Vec<ParticipantId>,
    /// Some plain video source renumbers for a thinned receiver, so [`Path::rewrite`] must
    /// look; while false (nobody was ever thinned) it answers at once.
    renumbering: bool,
    last_n: LastN,
    /// Per receiver, from `Command::ReceiverPrefs`.
    prefs: HashMap<ParticipantId, ReceiverPrefs>,
    /// RTX sequence numbers per (receiver, media SSRC).
    rtx_seqs: HashMap<(ParticipantId, u32), u16>,
    keyframe_method: HashMap<ParticipantId, KeyframeMethod>,
    /// Per receiver, from its RTCP.
    estimates: HashMap<ParticipantId, Estimate>,
    /// Per incoming stream (source, kind index), for the reflector's receiver reports.
    reports: HashMap<(ParticipantId, usize), feedback::ReportState>,
    next_report: Option<Instant>,
    /// Recent NACKs, to ignore quick repeats.
    nack_memory: nack::NackMemory,
    /// Whether each member's `quality` light is reported (reflect rooms; a mixer reports
    /// its own).
    quality_reports: bool,
    /// Per member, its uplink audio over the last report interval: (fraction lost /256,
    /// jitter ms), from the sorter.
    uplink: HashMap<ParticipantId, (u8, f64)>,
    /// Per member, what its own receiver reports say about what it gets: (worst fraction
    /// lost /256, largest jitter ms, when).
    downlink: HashMap<ParticipantId, (u8, f64, Instant)>,
    stats: ReflectorStats,
    /// Keys the maps made now and later (a source's renumbering, a simulcast's receivers).
    hasher: Hasher,
    /// Members that are a link's end or mirrored from a linked server (cascading); everyone
    /// else is a client.
    endpoints: HashMap<ParticipantId, Endpoint>,
    endpoints_changed: bool,
}

impl Default for Reflector {
    fn default() -> Self {
        Self::with_hasher(Hasher::default())
    }
}

impl Reflector {
    pub fn new() -> Self {
        Self::default()
    }

    /// A reflector whose maps are keyed by `hasher`: a seeded one (as in a mesh with
    /// `MeshConfig::hash_seed`) makes a run repeat exactly; `new` keeps random keys.
    pub fn with_hasher(hasher: Hasher) -> Self {
        Self {
            members: Vec::new(),
            table: hasher.map(),
            rebuilds: 0,
            codecs: [None; 128],
            video: hasher.map(),
            simulcast: hasher.map(),
            thinned: Vec::new(),
            renumbering: false,
            last_n: LastN::new(hasher),
            prefs: hasher.map(),
            rtx_seqs: hasher.map(),
            keyframe_method: hasher.map(),
            estimates: hasher.map(),
            reports: hasher.map(),
            next_report: None,
            nack_memory: nack::NackMemory::default(),
            quality_reports: false,
            uplink: hasher.map(),
            downlink: hasher.map(),
            stats: ReflectorStats::default(),
            hasher,
            endpoints: hasher.map(),
            endpoints_changed: false,
        }
    }

    /// The receivers of `src`'s `kind` media under the current table.
    pub fn receivers(&self, src: ParticipantId, kind: MediaKind) -> &[ParticipantId] {
        self.table
            .get(&src)
            .map_or(&[], |e| &e.receivers[kind.index()][..])
    }

    /// How many times the table was rebuilt; for tests and metrics.
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds
    }

    /// Declares that video with payload type `pt` is `codec`, which enables keyframe gating
    /// for new receivers (and thinning) on it.
    pub fn set_video_codec(&mut self, pt: u8, codec: VideoCodec) {
        if let Some(slot) = self.codecs.get_mut(usize::from(pt)) {
            *slot = Some(codec);
        }
    }

    /// Last-N: forward video only from the `n` most recent speakers (`None`: everyone), as
    /// detected from the RFC 6464 audio level under one-byte extension id `audio_level_id`.
    pub fn set_last_n(&mut self, n: Option<usize>, audio_level_id: u8) {
        self.last_n.set(n, audio_level_id);
    }

    /// Whether `src`'s video is forwarded under last-N now.
    pub fn forwards_video_of(&self, src: ParticipantId) -> bool {
        self.last_n.forwards(src)
    }

    /// The member who started talking most recently and still talks. The `dominant`
    /// lines follow it, with hysteresis ([`mesh::talk::DominantSpeaker`]).
    pub fn dominant_speaker(&self) -> Option<ParticipantId> {
        self.last_n.dominant()
    }

    /// Reports each member's `quality` light every [`REPORT_INTERVAL`] (reflect rooms):
    /// the worse of what its receiver reports say it gets and how its own audio arrives.
    pub fn set_quality_reports(&mut self, on: bool) {
        self.quality_reports = on;
    }

    /// Whether the reflector reports its talkers' levels and the dominant speaker (on by
    /// default; off when a mixer reports them from the audio it mixes).
    pub fn set_indicators(&mut self, on: bool) {
        self.last_n.set_indicators(on);
    }

    /// How `src` is asked for keyframes (PLI unless set).
    pub fn set_keyframe_method(&mut self, src: ParticipantId, method: KeyframeMethod) {
        self.keyframe_method.insert(src, method);
    }

    /// Counters of the RTCP work.
    pub fn stats(&self) -> &ReflectorStats {
        &self.stats
    }

    /// What `receiver`'s feedback says about its downlink.
    pub fn estimate(&self, receiver: ParticipantId) -> Option<Estimate> {
        self.estimates.get(&receiver).copied()
    }

    /// Brings the table in line with `members`. Cheap when nothing changed: one slice compare.
    pub fn sync(&mut self, members: &[ParticipantId]) {
        if self.members == members && !self.endpoints_changed {
            return;
        }
        self.endpoints_changed = false;
        self.endpoints.retain(|p, _| members.contains(p));
        // Every video source gets its new receivers, who wait for a keyframe.
        for (src, v) in &mut self.video {
            for &m in members.iter().filter(|&m| m != src) {
                if !self.members.contains(&m) {
                    v.add_receiver(m);
                }
            }
            v.sync(members);
        }
        self.video.retain(|src, _| members.contains(src));
        self.renumbering = self.video.values().any(VideoSource::renumbers);
        self.simulcast.retain(|src, _| members.contains(src));
        self.estimates.retain(|p, _| members.contains(p));
        self.prefs.retain(|p, _| members.contains(p));
        self.rtx_seqs.retain(|(p, _), _| members.contains(p));
        self.reports.retain(|(p, _), _| members.contains(p));
        self.uplink.retain(|p, _| members.contains(p));
        self.downlink.retain(|p, _| members.contains(p));
        self.uplink.reserve(members.len());
        self.downlink.reserve(members.len());
        // Room for every member's entries, so they are not allocated packet by packet.
        self.reports.reserve(2 * members.len());
        self.estimates.reserve(members.len());
        self.video.reserve(members.len());
        self.last_n.sync(members);
        self.thinned.retain(|p| members.contains(p));
        self.thinned.reserve(members.len());
        self.members.clear();
        self.members.extend_from_slice(members);
        // Reuse the vectors of sources that stay, so a join does not reallocate every list.
        self.table.retain(|src, _| members.contains(src));
        for &src in members {
            let entry = self.table.entry(src).or_default();
            let from = self.endpoints.get(&src).copied().unwrap_or_default();
            let endpoints = &self.endpoints;
            let endpoint = |m: &ParticipantId| endpoints.get(m).copied().unwrap_or_default();
            for list in &mut entry.receivers {
                list.clear();
                // Everyone but the source itself (never echo) who receives from it here
                // (a linked server's mirrored members do not; a link gets local media only).
                // Links first: a linked server fans out to its own members, so its copy
                // leads the batch instead of waiting behind every local send.
                let receives = |m: &ParticipantId| *m != src && endpoint(m).receives(from);
                let peer = |m: &ParticipantId| endpoint(m).is_end();
                list.extend(members.iter().filter(|m| peer(m) && receives(m)));
                list.extend(members.iter().filter(|m| !peer(m) && receives(m)));
            }
        }
        let endpoints = &self.endpoints;
        for (src, sim) in &mut self.simulcast {
            if let Some(e) = self.table.get(src) {
                sim.sync(&e.receivers[MediaKind::Video.index()], |m| {
                    is_end(endpoints, m)
                });
            }
        }
        self.rebuilds += 1;
    }
}

/// Whether `m` is the end of a link or of another worker's part: it gets every simulcast
/// encoding as it comes.
fn is_end(endpoints: &HashMap<ParticipantId, Endpoint>, m: ParticipantId) -> bool {
    endpoints.get(&m).is_some_and(|e| e.is_end())
}

impl Reflector {
    /// Video: cached for NACKs, held back from receivers waiting for a keyframe.
    fn route_video(
        &mut self,
        now: Instant,
        src: ParticipantId,
        pkt: &RtpView<'_>,
        out: &mut Vec<ParticipantId>,
    ) {
        let receivers = self
            .table
            .get(&src)
            .map_or(&[][..], |e| &e.receivers[MediaKind::Video.index()][..]);
        if !self.last_n.forwards(src) {
            self.stats.held_last_n += receivers.len() as u64;
            return;
        }
        let codec = self.codecs[usize::from(pkt.payload_type())];
        // Most conferences have no simulcast: skip the lookup.
        let sim = match self.simulcast.is_empty() {
            true => None,
            false => self.simulcast.get_mut(&src),
        };
        let held = match sim {
            Some(sim) => sim.route(now, pkt, codec, receivers, &self.thinned, out),
            None => {
                let hasher = self.hasher;
                let v = self
                    .video
                    .entry(src)
                    .or_insert_with(|| VideoSource::new(pkt.ssrc(), receivers, hasher));
                let held = v.route(now, pkt, codec, receivers, &self.thinned, out);
                self.renumbering |= v.renumbers();
                held
            }
        };
        let st = &mut self.stats;
        st.held_for_keyframe += held.keyframe;
        st.held_thinned += held.thinned;
        st.held_other_layer += held.other_layer;
        st.held_unknown_layer += held.unknown_layer;
    }
}

impl Reflector {
    /// Thins the video of every receiver whose estimate is below the rate of what it gets
    /// (after simulcast picked the layers).
    fn choose_thinning(&mut self, now: Instant, members: &[ParticipantId]) {
        self.thinned.clear();
        let (audio_total, audio_own) = self.last_n.audio_rates(now);
        for &r in members {
            let Some(budget) = self.estimates.get(&r).and_then(Estimate::bits_per_sec) else {
                continue;
            };
            let audio = audio_total.saturating_sub(audio_own(r));
            if budget.saturating_sub(audio) < self.video_rate_to(r) {
                self.thinned.push(r);
            }
        }
    }

    /// The rate of the video `r` gets (before thinning), bits/s, as measured on arrival.
    fn video_rate_to(&self, r: ParticipantId) -> u64 {
        let layered: u64 = self.simulcast.values().map(|s| s.rate_for(r)).sum();
        plain_video_to(&self.video, &self.last_n, r) + layered
    }

    /// `entered` is a speaker again: its video restarts at a keyframe for its receivers.
    fn entered_last_n(&mut self, entered: ParticipantId) {
        let receivers = self
            .table
            .get(&entered)
            .map_or(&[][..], |e| &e.receivers[MediaKind::Video.index()][..]);
        if let Some(v) = self.video.get_mut(&entered) {
            for &r in receivers {
                v.add_receiver(r);
            }
        }
        if let Some(sim) = self.simulcast.get_mut(&entered) {
            // Receivers rejoin at their target layer's next keyframe, numbering continued.
            for sub in &mut sim.subs {
                sub.current = None;
                sim.layers[sub.target].pending = true;
            }
        }
    }

    /// Receivers whose video is thinned now.
    pub fn thinned(&self) -> &[ParticipantId] {
        &self.thinned
    }
}

impl Path for Reflector {
    fn route(
        &mut self,
        now: Instant,
        src: ParticipantId,
        kind: MediaKind,
        pkt: &RtpView<'_>,
        members: &[ParticipantId],
        out: &mut Vec<ParticipantId>,
    ) {
        self.sync(members);
        if kind == MediaKind::Video {
            return self.route_video(now, src, pkt, out);
        }
        // Speech detection on every audio packet (speaking, levels, dominant speaker,
        // last-N), and the source's push-to-talk run, in one lookup.
        let (entered, src_run) = self.last_n.observe(now, src, pkt);
        if let Some(e) = entered {
            // Last-N: a new speaker's video reaches its receivers from a keyframe on.
            self.entered_last_n(e);
        }
        match src_run {
            // Smart duplex: a receiver talking since before this run began does not get it.
            Some(run) => out.extend(
                self.receivers(src, kind)
                    .iter()
                    .copied()
                    .filter(|&r| talk::audible(self.last_n.duplex_run(r), run)),
            ),
            None => out.extend_from_slice(self.receivers(src, kind)),
        }
    }

    fn on_tick(&mut self, now: Instant, members: &[ParticipantId], out: &mut PathOut<'_>) {
        // Joins show up here even before any packet flows, so their keyframe requests go
        // out within a tick.
        self.sync(members);
        let (estimates, prefs) = (&self.estimates, &self.prefs);
        // A receiver's estimate covers all it gets: the layers are chosen in what its audio
        // and its plain video leave (at a 300 kbit/s receiver two Opus streams take a
        // third). Several simulcast sources to one receiver each get that whole rest.
        if !self.simulcast.is_empty() {
            let (audio_total, audio_own) = self.last_n.audio_rates(now);
            let (video, last_n) = (&self.video, &self.last_n);
            let others = |r: ParticipantId| {
                audio_total.saturating_sub(audio_own(r)) + plain_video_to(video, last_n, r)
            };
            for sim in self.simulcast.values_mut() {
                sim.choose(
                    now,
                    |r| {
                        let e = estimates.get(&r).and_then(Estimate::bits_per_sec)?;
                        Some(e.saturating_sub(others(r)))
                    },
                    |r| prefs.get(&r).and_then(|p| p.max_layer),
                );
            }
        }
        self.choose_thinning(now, members);
        self.last_n.tick(now, out);
        self.request_keyframes(out);
        self.send_receiver_reports(members, out);
    }

    fn on_rtcp(
        &mut self,
        _now: Instant,
        src: ParticipantId,
        kind: Option<MediaKind>,
        data: &[u8],
        members: &[ParticipantId],
        out: &mut PathOut<'_>,
    ) {
        self.sync(members);
        self.handle_rtcp(src, kind, data, out);
    }

    fn on_simulcast(&mut self, _now: Instant, participant: ParticipantId, layers: &[u32]) {
        if layers.is_empty() {
            // No encodings: back to a plain video source.
            self.simulcast.remove(&participant);
            return;
        }
        let receivers = self
            .table
            .get(&participant)
            .map_or(&[][..], |e| &e.receivers[MediaKind::Video.index()][..]);
        self.video.remove(&participant);
        let endpoints = &self.endpoints;
        self.simulcast.insert(
            participant,
            Simulcast::new(layers, receivers, |m| is_end(endpoints, m), self.hasher),
        );
    }

    fn rewrite(
        &mut self,
        src: ParticipantId,
        receiver: ParticipantId,
        pkt: &RtpView<'_>,
    ) -> Option<Rewrite> {
        // Nobody thinned and no simulcast: the common case answers here.
        if !self.renumbering && self.simulcast.is_empty() {
            return None;
        }
        if !self.simulcast.is_empty() {
            if let Some(sim) = self.simulcast.get_mut(&src) {
                return sim.rewrite(receiver, pkt);
            }
        }
        if !self.renumbering {
            return None;
        }
        self.video.get_mut(&src)?.rewrite(receiver, pkt)
    }

    fn on_receiver_prefs(
        &mut self,
        _now: Instant,
        participant: ParticipantId,
        prefs: ReceiverPrefs,
    ) {
        self.prefs.insert(participant, prefs);
        if prefs.rtx_payload_type.is_some() {
            // One RTX sequence per source it may get, so resends do not allocate.
            self.rtx_seqs.reserve(self.members.len());
        }
    }

    fn on_channel(&mut self, _now: Instant, participant: ParticipantId, kind: MediaKind) {
        if kind != MediaKind::Video {
            return;
        }
        // A keyframe that came before the channel went nowhere: start from the next one.
        for (&src, v) in &mut self.video {
            if src != participant {
                v.add_receiver(participant);
            }
        }
        for (&src, sim) in &mut self.simulcast {
            if src == participant {
                continue;
            }
            if let Some(sub) = sim.sub_mut(participant) {
                // Rejoins its target layer at a keyframe, numbering continued.
                sub.current = None;
                let target = sub.target;
                sim.layers[target].pending = true;
            }
        }
    }

    fn on_mute(&mut self, now: Instant, participant: ParticipantId, muted: bool) {
        self.last_n.mute(now, participant, muted);
    }

    fn on_endpoint(&mut self, _now: Instant, participant: ParticipantId, endpoint: Endpoint) {
        match endpoint {
            Endpoint::Client => self.endpoints.remove(&participant),
            _ => self.endpoints.insert(participant, endpoint),
        };
        // Rebuild the table at the next packet, with the receivers this changes.
        self.endpoints_changed = true;
    }

    fn on_talk(&mut self, now: Instant, participant: ParticipantId, on: bool) {
        // The run drives smart duplex, speaking order and last-N alike.
        if let Some(entered) = self.last_n.control(now, participant, on) {
            self.entered_last_n(entered);
        }
    }
}

/// The rate of the plain (not simulcast) video `r` gets, bits/s, as measured on arrival.
fn plain_video_to(
    video: &HashMap<ParticipantId, VideoSource>,
    last_n: &LastN,
    r: ParticipantId,
) -> u64 {
    video
        .iter()
        .filter(|(&s, _)| s != r && last_n.forwards(s))
        .map(|(_, v)| v.rate.bits_per_sec)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(r: &mut Reflector, src: ParticipantId, kind: MediaKind, members: &[u32]) -> Vec<u32> {
        let data = [0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1];
        let pkt = RtpView::parse(&data).unwrap();
        let mut out = Vec::new();
        r.route(Instant::now(), src, kind, &pkt, members, &mut out);
        out
    }

    #[test]
    fn forwards_to_everyone_else() {
        let mut r = Reflector::new();
        let m = [1, 2, 3];
        assert_eq!(route(&mut r, 1, MediaKind::Audio, &m), vec![2, 3]);
        assert_eq!(route(&mut r, 2, MediaKind::Video, &m), vec![1, 3]);
        assert_eq!(route(&mut r, 3, MediaKind::Audio, &m), vec![1, 2]);
        assert_eq!(r.rebuilds(), 1, "unchanged membership must not rebuild");
    }

    #[test]
    fn follows_membership_changes() {
        let mut r = Reflector::new();
        assert_eq!(route(&mut r, 1, MediaKind::Audio, &[1, 2]), vec![2]);
        assert_eq!(route(&mut r, 1, MediaKind::Audio, &[1, 2, 3]), vec![2, 3]);
        // 2 leaves: its entry goes and nobody routes to it.
        assert_eq!(route(&mut r, 1, MediaKind::Audio, &[1, 3]), vec![3]);
        assert!(r.receivers(2, MediaKind::Audio).is_empty());
        assert_eq!(r.rebuilds(), 3);
        // Same size, different member: still a change.
        assert_eq!(route(&mut r, 1, MediaKind::Video, &[1, 4]), vec![4]);
        assert_eq!(r.rebuilds(), 4);
    }

    #[test]
    fn alone_or_unknown_source_gets_nothing() {
        let mut r = Reflector::new();
        assert!(route(&mut r, 1, MediaKind::Audio, &[1]).is_empty());
        assert!(route(&mut r, 9, MediaKind::Audio, &[1]).is_empty());
        assert!(route(&mut r, 9, MediaKind::Audio, &[]).is_empty());
    }

    #[test]
    fn smart_duplex_when_forwarding_audio() {
        let mut r = Reflector::new();
        let m = [1, 2, 3];
        let t0 = Instant::now();
        let at = |s: u64| t0 + std::time::Duration::from_secs(s);
        route(&mut r, 1, MediaKind::Audio, &m);
        // A talks from 0 s, B interrupts at 3 s, C at 4 s.
        r.on_talk(at(0), 1, true);
        r.on_talk(at(3), 2, true);
        r.on_talk(at(4), 3, true);
        // B and C began after A: neither gets A's audio; A gets both.
        assert_eq!(route(&mut r, 1, MediaKind::Audio, &m), Vec::<u32>::new());
        assert_eq!(route(&mut r, 2, MediaKind::Audio, &m), vec![1]);
        assert_eq!(route(&mut r, 3, MediaKind::Audio, &m), vec![1, 2]);
        // Video is never held back.
        assert_eq!(route(&mut r, 1, MediaKind::Video, &m), vec![2, 3]);
        // B stops: A's run, still going, resumes for B.
        r.on_talk(at(6), 2, false);
        assert_eq!(route(&mut r, 1, MediaKind::Audio, &m), vec![2]);
    }

    /// A receiver whose video channel comes after a keyframe went by starts at the next one.
    #[test]
    fn a_channel_set_up_late_waits_for_the_next_keyframe() {
        let mut r = Reflector::new();
        r.set_video_codec(96, VideoCodec::H264);
        let video = |r: &mut Reflector, key: bool| {
            let mut data = vec![0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7];
            data.push(if key { 0x65 } else { 0x41 });
            let pkt = RtpView::parse(&data).unwrap();
            let mut out = Vec::new();
            r.route(
                Instant::now(),
                1,
                MediaKind::Video,
                &pkt,
                &[1, 2, 3],
                &mut out,
            );
            out
        };
        assert_eq!(video(&mut r, true), vec![2, 3]);
        r.on_channel(Instant::now(), 3, MediaKind::Video);
        // Audio channels and the source's own channel change nothing.
        r.on_channel(Instant::now(), 2, MediaKind::Audio);
        r.on_channel(Instant::now(), 1, MediaKind::Video);
        assert_eq!(video(&mut r, false), vec![2]);
        assert_eq!(video(&mut r, true), vec![2, 3]);
        assert_eq!(video(&mut r, false), vec![2, 3]);
    }

    #[test]
    fn steady_state_reuses_lists() {
        let mut r = Reflector::new();
        let m: Vec<u32> = (0..50).collect();
        route(&mut r, 0, MediaKind::Audio, &m);
        let before = r.receivers(0, MediaKind::Audio).as_ptr();
        for src in 0..50 {
            assert_eq!(route(&mut r, src, MediaKind::Audio, &m).len(), 49);
        }
        assert_eq!(r.receivers(0, MediaKind::Audio).as_ptr(), before);
        assert_eq!(r.rebuilds(), 1);
    }
}
