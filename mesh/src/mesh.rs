//! The [`Mesh`] state machine: the tables of one worker and the per-packet pipeline.

use crate::FastMap as HashMap;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::filter::{Candidate, Filter};
use crate::rtcp;
use crate::rtp::{self, RtpView};
use crate::scheduler::Scheduler;
use crate::sender::{store_body, Sender, TxLimits};
use crate::sorter::{Sorter, SourceIndex, StreamReport};
use crate::{
    Command, ConfId, DropReason, Event, Hasher, MediaKind, MeshConfig, MeshStats, ParticipantId,
    Path, QualitySummary, StreamStats, TxBatch,
};

/// Per-conference tables start this small; they grow on join, never per packet.
const CONF_PRESIZE: usize = 8;
/// The largest RTCP compound stamped for a link (on the stack; paths write far less).
const RTCP_STAMP_MAX: usize = 1500;
/// A zero tick would make the caller spin.
const MIN_TICK: Duration = Duration::from_millis(1);

/// Everything the mesh keeps for one receiving participant.
#[derive(Debug)]
struct Receiver {
    filter: Filter,
    scheduler: Scheduler,
    sender: Sender,
}

struct Conference<P> {
    path: P,
    /// In join order; handed to [`Path::route`].
    members: Vec<ParticipantId>,
    sorter: Sorter,
    receivers: HashMap<ParticipantId, Receiver>,
}

/// The media core of one worker thread. See the crate docs for the pipeline.
pub struct Mesh<P: Path> {
    tick: Duration,
    limits: TxLimits,
    next_tick: Instant,
    conferences: HashMap<ConfId, Conference<P>>,
    /// Which conference each participant is in; participant ids are server-wide.
    membership: HashMap<ParticipantId, ConfId>,
    index: SourceIndex,
    /// Keys every map the mesh makes, now or for conferences created later.
    hasher: Hasher,
    commands: VecDeque<Command<P>>,
    events: VecDeque<Event>,
    tx: TxBatch,
    /// Scratch for [`Path::route`], reused for every packet.
    route: Vec<ParticipantId>,
    stats: MeshStats,
}

impl<P: Path> Mesh<P> {
    /// An empty mesh whose first tick is due at `now`.
    pub fn new(now: Instant, cfg: MeshConfig) -> Self {
        let parts = cfg.max_participants.max(1);
        let hasher = Hasher::new(cfg.hash_seed);
        Self {
            tick: cfg.tick.max(MIN_TICK),
            limits: TxLimits {
                packets: cfg.tx_packets,
                bytes: cfg.tx_bytes,
            },
            next_tick: now,
            conferences: hasher.map_with_capacity(cfg.max_conferences),
            membership: hasher.map_with_capacity(parts),
            index: SourceIndex::with_capacity(parts, hasher),
            hasher,
            commands: VecDeque::with_capacity(64),
            events: VecDeque::with_capacity(64),
            tx: TxBatch::with_capacity(cfg.tx_packets, cfg.tx_bytes),
            route: Vec::with_capacity(parts),
            stats: MeshStats::default(),
        }
    }

    /// Takes one received datagram through the pipeline.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += data.len() as u64;
        if rtp::is_rtcp(data) {
            self.handle_rtcp(now, from, data);
            return;
        }
        let Ok(pkt) = RtpView::parse(data) else {
            self.stats.drop(DropReason::Malformed);
            return;
        };
        match self.sort(now, from, &pkt) {
            Some((conf, src, kind)) => self.forward(now, conf, src, kind, &pkt),
            None => self.stats.drop(DropReason::UnknownSource),
        }
    }

    /// RTCP from a known address goes to its conference's path, which terminates it (and may
    /// answer through [`PathOut`]); strangers' RTCP counts as unknown like any stranger's
    /// packet, and a compound that does not parse is dropped before the path sees it.
    fn handle_rtcp(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let owner = self
            .index
            .owner(&from)
            .or_else(|| rtcp::sender_ssrc(data).and_then(|ssrc| self.index.relayed(from, ssrc)));
        let Some((c, p)) = owner else {
            self.stats.drop(DropReason::UnknownSource);
            return;
        };
        let Some(conf) = self.conferences.get_mut(&c) else {
            self.stats.drop(DropReason::UnknownSource);
            return;
        };
        if !rtcp::is_valid(data) {
            self.stats.drop(DropReason::Rtcp);
            return;
        }
        self.stats.rtcp_in += 1;
        let kind = rtcp::sender_ssrc(data).and_then(|ssrc| conf.sorter.kind_of(p, ssrc));
        let mut out = PathOut {
            now,
            conf: c,
            sorter: &conf.sorter,
            receivers: &mut conf.receivers,
            tx: &mut self.tx,
            limits: self.limits,
            stats: &mut self.stats,
            events: &mut self.events,
        };
        conf.path
            .on_rtcp(now, p, kind, data, &conf.members, &mut out);
    }

    /// Sorter stage: finds the stream, latching a pending channel on its first packet.
    fn sort(
        &mut self,
        now: Instant,
        from: SocketAddr,
        pkt: &RtpView<'_>,
    ) -> Option<(ConfId, ParticipantId, MediaKind)> {
        if let Some((c, p)) = self.index.owner(&from) {
            let conf = self.conferences.get_mut(&c)?;
            if let Some(kind) = conf.sorter.accept(now, p, from, pkt) {
                return Some((c, p, kind));
            }
        }
        if let Some((c, p)) = self.index.relayed(from, pkt.ssrc()) {
            let conf = self.conferences.get_mut(&c)?;
            return conf
                .sorter
                .accept(now, p, from, pkt)
                .map(|kind| (c, p, kind));
        }
        let (c, p, kind) = self.index.pending_latch(from.ip(), pkt.ssrc())?;
        let conf = self.conferences.get_mut(&c)?;
        if !conf
            .sorter
            .bind_latch(&mut self.index, (c, p), kind, from, pkt.ssrc())
        {
            return None;
        }
        // A `Remote::LatchTo` keeps sending to its declared port, not to `from`.
        let dest = conf.sorter.send_addr(p, kind).or(Some(from));
        if let Some(rx) = conf.receivers.get_mut(&p) {
            rx.sender.set_channel(kind, dest);
        }
        self.events.push_back(Event::Latched {
            conf: c,
            participant: p,
            kind,
            addr: from,
        });
        let kind = conf.sorter.accept(now, p, from, pkt)?;
        Some((c, p, kind))
    }

    /// Path, filter, scheduler and sender stages for every receiver the path picks.
    fn forward(
        &mut self,
        now: Instant,
        conf: ConfId,
        src: ParticipantId,
        kind: MediaKind,
        pkt: &RtpView<'_>,
    ) {
        let Some(conf) = self.conferences.get_mut(&conf) else {
            return;
        };
        let cand = Candidate {
            src,
            kind,
            src_muted: conf.sorter.is_muted(src),
            src_endpoint: conf.sorter.endpoint(src),
        };
        self.route.clear();
        conf.path
            .route(now, src, kind, pkt, &conf.members, &mut self.route);
        let len = pkt.len();
        // The body goes into the batch once, when the first receiver takes the packet.
        let mut body = None;
        for rid in &self.route {
            let Some(rx) = conf.receivers.get_mut(rid) else {
                self.stats.drop(DropReason::UnknownReceiver);
                continue;
            };
            let verdict = rx
                .filter
                .check(&cand)
                .and_then(|()| rx.sender.prepare(kind, len, &self.tx, self.limits))
                .and_then(|dest| rx.scheduler.admit(now, kind, len).map(|()| dest));
            match verdict {
                Ok(dest) => {
                    let body = *body.get_or_insert_with(|| store_body(&mut self.tx, pkt));
                    let rewrite = match kind {
                        MediaKind::Audio => None,
                        MediaKind::Video => conf.path.rewrite(src, *rid, pkt),
                    };
                    rx.sender
                        .write(&mut self.tx, dest, kind, pkt, body, rewrite);
                    self.stats.packets_out += 1;
                    self.stats.bytes_out += len as u64;
                }
                Err(reason) => self.stats.drop(reason),
            }
        }
    }

    /// Queues a control command; it takes effect at the next [`Mesh::handle_tick`].
    pub fn handle_command(&mut self, _now: Instant, cmd: Command<P>) {
        self.commands.push_back(cmd);
    }

    /// Applies queued commands and runs periodic work.
    pub fn handle_tick(&mut self, now: Instant) {
        while let Some(cmd) = self.commands.pop_front() {
            if self.apply(now, cmd) {
                self.stats.commands_applied += 1;
            } else {
                self.stats.commands_rejected += 1;
            }
        }
        if now >= self.next_tick {
            self.next_tick += self.tick;
            // After a stall, restart the cadence rather than firing a burst of catch-up ticks.
            if self.next_tick <= now {
                self.next_tick = now + self.tick;
            }
            for (&conf, c) in &mut self.conferences {
                let mut out = PathOut {
                    now,
                    conf,
                    sorter: &c.sorter,
                    receivers: &mut c.receivers,
                    tx: &mut self.tx,
                    limits: self.limits,
                    stats: &mut self.stats,
                    events: &mut self.events,
                };
                c.path.on_tick(now, &c.members, &mut out);
            }
        }
    }

    /// Applies one command; false when it does not fit the current state.
    fn apply(&mut self, now: Instant, cmd: Command<P>) -> bool {
        match cmd {
            Command::CreateConference { conf, path } => {
                if self.conferences.contains_key(&conf) {
                    return false;
                }
                self.conferences.insert(
                    conf,
                    Conference {
                        path: *path,
                        members: Vec::with_capacity(CONF_PRESIZE),
                        sorter: Sorter::with_capacity(CONF_PRESIZE, self.hasher),
                        receivers: self.hasher.map_with_capacity(CONF_PRESIZE),
                    },
                );
                true
            }
            Command::RemoveConference { conf } => {
                let Some(mut c) = self.conferences.remove(&conf) else {
                    return false;
                };
                for pid in c.members.drain(..) {
                    c.sorter.remove(&mut self.index, conf, pid);
                    self.membership.remove(&pid);
                }
                true
            }
            Command::AddParticipant { conf, participant } => {
                let Some(c) = self.conferences.get_mut(&conf) else {
                    return false;
                };
                if self.membership.contains_key(&participant) {
                    return false;
                }
                self.membership.insert(participant, conf);
                c.members.push(participant);
                c.sorter.add(participant);
                c.receivers.insert(
                    participant,
                    Receiver {
                        filter: Filter::new(participant),
                        scheduler: Scheduler::default(),
                        sender: Sender::default(),
                    },
                );
                true
            }
            Command::RemoveParticipant { conf, participant } => {
                if self.membership.get(&participant) != Some(&conf) {
                    return false;
                }
                let Some(c) = self.conferences.get_mut(&conf) else {
                    return false;
                };
                self.membership.remove(&participant);
                c.members.retain(|&m| m != participant);
                c.sorter.remove(&mut self.index, conf, participant);
                c.receivers.remove(&participant);
                true
            }
            Command::SetChannel {
                conf,
                participant,
                kind,
                remote,
                ssrc,
                clock_rate,
            } => {
                let Some(c) = self.conferences.get_mut(&conf) else {
                    return false;
                };
                let key = (conf, participant);
                let had_layers = c.sorter.has_layers(participant, kind);
                match c
                    .sorter
                    .set_channel(&mut self.index, key, kind, remote, ssrc, clock_rate)
                {
                    Ok(addr) => {
                        if let Some(rx) = c.receivers.get_mut(&participant) {
                            rx.sender.set_channel(kind, addr);
                        }
                        if had_layers && !c.sorter.has_layers(participant, kind) {
                            // A new video SSRC dropped the layers: the path drops them too.
                            c.path.on_simulcast(now, participant, &[]);
                        }
                        c.path.on_channel(now, participant, kind);
                        true
                    }
                    Err(_) => false,
                }
            }
            Command::SetSimulcast {
                conf,
                participant,
                layers,
            } => {
                let Some(c) = self.conferences.get_mut(&conf) else {
                    return false;
                };
                let ok = c
                    .sorter
                    .set_layers(&mut self.index, (conf, participant), &layers);
                if ok {
                    c.path.on_simulcast(now, participant, &layers);
                }
                ok
            }
            Command::SetBudget {
                conf,
                participant,
                bits_per_sec,
            } => match self.receiver_mut(conf, participant) {
                Some(rx) => {
                    rx.scheduler.set_budget(bits_per_sec);
                    true
                }
                None => false,
            },
            Command::Mute {
                conf,
                participant,
                muted,
            } => self.conferences.get_mut(&conf).is_some_and(|c| {
                let ok = c.sorter.set_muted(participant, muted);
                if ok {
                    c.path.on_mute(now, participant, muted);
                }
                ok
            }),
            Command::Talk {
                conf,
                participant,
                on,
            } => match self.conferences.get_mut(&conf) {
                Some(c) if c.members.contains(&participant) => {
                    c.path.on_talk(now, participant, on);
                    true
                }
                _ => false,
            },
            Command::SetEndpoint {
                conf,
                participant,
                endpoint,
            } => match self.conferences.get_mut(&conf) {
                Some(c) if c.members.contains(&participant) => {
                    c.sorter.set_endpoint(participant, endpoint);
                    if let Some(rx) = c.receivers.get_mut(&participant) {
                        rx.filter.set_endpoint(endpoint);
                    }
                    c.path.on_endpoint(now, participant, endpoint);
                    true
                }
                _ => false,
            },
            Command::ReceiverPrefs {
                conf,
                participant,
                prefs,
            } => match self.conferences.get_mut(&conf) {
                Some(c) if c.members.contains(&participant) => {
                    c.path.on_receiver_prefs(now, participant, prefs);
                    true
                }
                _ => false,
            },
        }
    }

    fn receiver_mut(&mut self, conf: ConfId, pid: ParticipantId) -> Option<&mut Receiver> {
        self.conferences.get_mut(&conf)?.receivers.get_mut(&pid)
    }

    /// Hands over everything ready to send by swapping batches: no copy, no allocation. The
    /// caller sends `out`'s packets and clears it before the next call.
    pub fn poll_transmit(&mut self, out: &mut TxBatch) {
        std::mem::swap(&mut self.tx, out);
        // In case the caller handed back a batch it did not clear.
        self.tx.clear();
    }

    /// Packets waiting in the mesh's transmit batch. A caller feeding many datagrams between
    /// polls can flush early when this nears [`MeshConfig::tx_packets`].
    pub fn pending_transmit(&self) -> usize {
        self.tx.len()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Mesh::handle_tick`] must next be called.
    pub fn poll_timeout(&self) -> Instant {
        self.next_tick
    }

    pub fn stats(&self) -> &MeshStats {
        &self.stats
    }

    /// Reception statistics of one incoming stream, from the sorter.
    pub fn stream_stats(
        &self,
        conf: ConfId,
        participant: ParticipantId,
        kind: MediaKind,
    ) -> Option<StreamStats> {
        self.conferences
            .get(&conf)?
            .sorter
            .stream_stats(participant, kind)
    }

    /// Reception quality summed over every incoming stream of every conference. Walks all
    /// streams, so call it at a metrics cadence, not per packet.
    pub fn quality(&self) -> QualitySummary {
        let mut q = QualitySummary::default();
        for c in self.conferences.values() {
            c.sorter.for_each_stream(|s| q.add(&s));
        }
        q
    }

    /// The path of a conference, for its own counters.
    pub fn path(&self, conf: ConfId) -> Option<&P> {
        self.conferences.get(&conf).map(|c| &c.path)
    }

    /// The path of a conference, to take what it made between ticks (a recording's mix).
    pub fn path_mut(&mut self, conf: ConfId) -> Option<&mut P> {
        self.conferences.get_mut(&conf).map(|c| &mut c.path)
    }

    /// The members of a conference in join order.
    pub fn members(&self, conf: ConfId) -> Option<&[ParticipantId]> {
        self.conferences.get(&conf).map(|c| &c.members[..])
    }

    pub fn conference_count(&self) -> usize {
        self.conferences.len()
    }

    pub fn participant_count(&self) -> usize {
        self.membership.len()
    }
}

/// What a path's [`Path::on_tick`] and [`Path::on_rtcp`] send through: each packet goes to
/// one receiver through that receiver's sender (channel and address) and, media only,
/// scheduler (budget), as forwarded packets do, and is counted the same way.
pub struct PathOut<'a> {
    now: Instant,
    conf: ConfId,
    sorter: &'a Sorter,
    receivers: &'a mut HashMap<ParticipantId, Receiver>,
    tx: &'a mut TxBatch,
    limits: TxLimits,
    stats: &'a mut MeshStats,
    events: &'a mut VecDeque<Event>,
}

impl PathOut<'_> {
    /// Queues a whole audio RTP packet for `to`; false (and counted) when it is dropped.
    pub fn send(&mut self, to: ParticipantId, packet: &[u8]) -> bool {
        self.send_media(to, MediaKind::Audio, packet)
    }

    /// Queues a whole RTP packet of `kind` (a mixed frame, a retransmission) for `to` through
    /// its scheduler; false (and counted) when it is dropped.
    pub fn send_media(&mut self, to: ParticipantId, kind: MediaKind, packet: &[u8]) -> bool {
        self.push(to, kind, packet, true)
    }

    /// Queues an RTCP packet for `to` on its `kind` channel (feedback to a sender, reports to
    /// a receiver). RTCP is small and keeps the media flowing, so the budget does not apply.
    pub fn send_rtcp(&mut self, to: ParticipantId, kind: MediaKind, packet: &[u8]) -> bool {
        let sent = self.push(to, kind, packet, false);
        self.stats.rtcp_out += u64::from(sent);
        sent
    }

    fn push(&mut self, to: ParticipantId, kind: MediaKind, packet: &[u8], budget: bool) -> bool {
        let Some(rx) = self.receivers.get_mut(&to) else {
            self.stats.drop(DropReason::UnknownReceiver);
            return false;
        };
        let len = packet.len();
        let verdict = rx
            .sender
            .prepare(kind, len, self.tx, self.limits)
            .and_then(|dest| match budget {
                true => rx.scheduler.admit(self.now, kind, len).map(|()| dest),
                false => Ok(dest),
            });
        match verdict {
            Ok(dest) => {
                match rx.filter.endpoint().mirror_ssrc() {
                    // Feedback for a mirrored member's stream goes over the link, under the
                    // SSRC its server knows our side of the link by (its RTCP demux key).
                    Some(link_ssrc) if !budget && packet.len() >= 8 => {
                        let mut buf = [0u8; RTCP_STAMP_MAX];
                        let Some(copy) = buf.get_mut(..packet.len()) else {
                            self.stats.drop(DropReason::Rtcp);
                            return false;
                        };
                        copy.copy_from_slice(packet);
                        copy[4..8].copy_from_slice(&link_ssrc.to_be_bytes());
                        self.tx.push(dest, copy);
                    }
                    _ => self.tx.push(dest, packet),
                }
                self.stats.packets_out += 1;
                self.stats.bytes_out += len as u64;
                true
            }
            Err(reason) => {
                self.stats.drop(reason);
                false
            }
        }
    }

    /// The time of the call this output belongs to.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// How the mesh receives `participant`'s `kind` stream, for the path's receiver reports.
    pub fn stream_report(
        &self,
        participant: ParticipantId,
        kind: MediaKind,
    ) -> Option<StreamReport> {
        self.sorter.report(participant, kind)
    }

    /// Reports a participant's reception quality to the control plane (`quality` lines).
    pub fn quality(&mut self, participant: ParticipantId, loss_permille: u32, jitter_ms: u32) {
        self.events.push_back(Event::Quality {
            conf: self.conf,
            participant,
            loss_permille,
            jitter_ms,
        });
    }

    /// Reports a talk-run edge to the control plane (`speaking` lines).
    pub fn speaking(&mut self, participant: ParticipantId, on: bool) {
        self.events.push_back(Event::Speaking {
            conf: self.conf,
            participant,
            on,
        });
    }

    /// Reports one period's talker levels to the control plane (`level` lines); an empty
    /// batch is not reported.
    pub fn levels(&mut self, levels: &crate::talk::Levels) {
        if !levels.is_empty() {
            self.events.push_back(Event::Levels {
                conf: self.conf,
                levels: *levels,
            });
        }
    }

    /// Reports a new dominant speaker to the control plane (`dominant` lines).
    pub fn dominant(&mut self, participant: ParticipantId) {
        self.events.push_back(Event::Dominant {
            conf: self.conf,
            participant,
        });
    }
}
