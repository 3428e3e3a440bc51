//! The worker's WebRTC port: browsers' ICE, DTLS and SRTP on the worker's own UDP port,
//! in front of the mesh. RFC 7983's first byte sorts a datagram: STUN and DTLS go to the
//! worker's [`webrtc::Table`], SRTP from an ICE-verified address is decrypted in place and
//! handed to the mesh as a plain member's RTP, and everything else goes to the mesh as
//! before. On the way out, packets for a WebRTC receiver are copied out of the shared batch
//! and encrypted per receiver into a second, pre-sized batch: no allocation, no lock.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use mesh::{Command, ConfId, MediaKind, Mesh, ParticipantId, Path, Remote, TxBatch};
use webrtc::srtp::MAX_TRAILER;
use webrtc::{Event, Identity, Kind, Params, Table};

/// Largest packet the encrypt step takes (a worker's datagrams are at most this).
const SCRATCH: usize = 2048;

/// Which member a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    pub conf: ConfId,
    pub participant: ParticipantId,
    /// The SSRC of the browser's audio, from its offer.
    pub ssrc: u32,
    pub clock_rate: u32,
    /// The video channel's SSRC (the camera's, or the member's reserved one when it only
    /// receives video); `None`: an audio-only member.
    pub video_ssrc: Option<u32>,
    /// A simulcast camera's lower encodings (lowest first, 0: none), `video_ssrc` on top.
    pub simulcast: [u32; 2],
}

/// A member's stream took one of a browser's receive slots: the conference service tells
/// the page whose stream the slot plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotTaken {
    pub conf: ConfId,
    /// The browser.
    pub participant: ParticipantId,
    pub slot: usize,
    /// The stream's SSRC (the member's own, or the mix's).
    pub source: u32,
}

/// What a worker's WebRTC port tells the conference service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcReport {
    Slot(SlotTaken),
    /// A member's session ended (lost consent, failed setup, a wrong certificate): a member
    /// that joined over HTTP (WHIP, WHEP) has nothing else to leave with.
    Closed {
        conf: ConfId,
        participant: ParticipantId,
    },
}

/// Reports held for the worker loop between two drains; more are counted and lost (the
/// page then shows the stream on an unnamed tile).
const SLOT_EVENTS: usize = 256;

/// What the conference service asks of a worker's WebRTC port.
pub enum RtcCommand {
    Add(Box<Params<Tag>>),
    /// The member left: its session (our ufrag) ends.
    Remove {
        ufrag: String,
    },
    /// The session's slots play only `sources` (a member's SSRCs): its audio slots when
    /// `audio`, its video slots when `video`; empty: streams take slots as they come. A
    /// WHEP viewer follows the speaker this way.
    Follow {
        ufrag: String,
        audio: bool,
        video: bool,
        sources: Vec<u32>,
    },
}

/// WebRTC drops and sessions, published with the worker's counters.
#[derive(Debug, Default)]
pub struct RtcCounters {
    pub sessions: AtomicU64,
    /// By reason, as [`REASONS`] names them.
    pub drops: [AtomicU64; REASONS.len()],
    /// Transport-cc feedback sent on browsers' uplinks, and read about their downlinks.
    pub uplink_feedback: AtomicU64,
    pub downlink_feedback: AtomicU64,
}

/// The reasons on `/metrics` (`noc_media_webrtc_drops{reason}`).
pub const REASONS: [&str; 14] = [
    "stun_malformed",
    "stun_unknown_user",
    "stun_bad_integrity",
    "dtls_no_session",
    "dtls_refused",
    "fingerprint_mismatch",
    "srtp_auth",
    "srtp_replay",
    "srtp_malformed",
    "srtp_unkeyed",
    "tx_no_consent",
    "tx_no_slot",
    "tx_no_codec",
    "tx_not_wanted",
];

fn values(c: &webrtc::Counters, oversize: u64) -> [u64; REASONS.len()] {
    [
        c.stun_malformed,
        c.stun_unknown_user,
        c.stun_bad_integrity,
        c.dtls_no_session,
        c.dtls_refused,
        c.fingerprint_mismatch,
        c.srtp_auth,
        c.srtp_replay,
        c.srtp_malformed + oversize,
        c.srtp_unkeyed,
        c.tx_refused + c.consent_expired,
        c.tx_no_slot,
        c.tx_no_codec,
        c.tx_not_wanted,
    ]
}

/// The WebRTC half of a worker.
pub struct Rtc {
    table: Table<Tag>,
    /// STUN and DTLS answers and encrypted media, sent after the mesh's batch.
    secure: TxBatch,
    scratch: Box<[u8; SCRATCH + MAX_TRAILER]>,
    stun: Vec<u8>,
    /// Each member's verified address, so a closed session's address stays refused.
    addrs: HashMap<(ConfId, ParticipantId), SocketAddr>,
    /// Addresses of sessions that ended: the mesh may still aim packets there, and plain
    /// RTP must never go to an address that lost consent.
    blocked: HashSet<SocketAddr>,
    /// Packets too long for the scratch buffer.
    oversize: u64,
    /// The latest `now` the worker gave us (egress runs without a clock read of its own).
    now: Instant,
    slot_events: Vec<RtcReport>,
    pub slot_events_lost: u64,
}

impl Rtc {
    pub fn new(identity: Arc<Identity>, local: SocketAddr, packets: usize, bytes: usize) -> Self {
        Rtc {
            table: Table::new(identity, local),
            secure: TxBatch::with_capacity(packets, bytes),
            scratch: Box::new([0; SCRATCH + MAX_TRAILER]),
            stun: Vec::with_capacity(256),
            addrs: HashMap::new(),
            blocked: HashSet::new(),
            oversize: 0,
            now: Instant::now(),
            slot_events: Vec::with_capacity(SLOT_EVENTS),
            slot_events_lost: 0,
        }
    }

    pub fn command(&mut self, now: Instant, cmd: RtcCommand) {
        match cmd {
            RtcCommand::Add(p) => {
                if let Err(e) = self.table.add(now, *p) {
                    tracing::warn!(error = %e, "webrtc session not created");
                }
            }
            RtcCommand::Remove { ufrag } => {
                if let Some(tag) = self.table.remove_ufrag(&ufrag) {
                    self.forget(tag);
                }
            }
            RtcCommand::Follow {
                ufrag,
                audio,
                video,
                sources,
            } => {
                let kinds = [
                    (audio, webrtc::SlotKind::Audio),
                    (video, webrtc::SlotKind::Video),
                ];
                for (_, k) in kinds.into_iter().filter(|(on, _)| *on) {
                    self.table.follow(&ufrag, k, &sources);
                }
            }
        }
    }

    fn forget(&mut self, tag: Tag) {
        if let Some(a) = self.addrs.remove(&(tag.conf, tag.participant)) {
            self.blocked.insert(a);
        }
    }

    /// One received datagram.
    pub fn ingress<P: Path>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
        mesh: &mut Mesh<P>,
    ) {
        self.now = now;
        match webrtc::demux(data) {
            Kind::Stun => {
                if self.table.handle_stun(now, from, data, &mut self.stun) {
                    self.secure.push(from, &self.stun);
                }
            }
            Kind::Dtls => {
                let secure = &mut self.secure;
                self.table
                    .handle_dtls(now, from, data, &mut |to, p| secure.push(to, p));
            }
            Kind::Rtp if self.table.is_peer(&from) => {
                let n = data.len();
                if n > SCRATCH {
                    self.oversize += 1;
                    return;
                }
                self.scratch[..n].copy_from_slice(data);
                // Refusals are counted by the table.
                if let Ok(m) = self.table.unprotect(now, &from, &mut self.scratch[..n]) {
                    mesh.handle_datagram(now, from, &self.scratch[..m]);
                }
            }
            // Plain RTP, and whatever the mesh counts as malformed.
            Kind::Rtp | Kind::Other => mesh.handle_datagram(now, from, data),
        }
    }

    /// Moves the packets for WebRTC receivers out of `batch`, encrypted, into the secure
    /// batch; a receiver without keys or consent gets nothing.
    pub fn egress(&mut self, batch: &mut TxBatch) {
        if self.table.is_empty() && self.blocked.is_empty() {
            return;
        }
        let mut any = false;
        for i in 0..batch.len() {
            let dest = batch.dest(i);
            if self.blocked.contains(&dest) {
                any = true;
                self.table.counters.tx_refused += 1;
                continue;
            }
            if !self.table.is_peer(&dest) {
                continue;
            }
            any = true;
            let Some(pkt) = batch.get(i) else { continue };
            if pkt.len() > SCRATCH {
                self.oversize += 1;
                continue;
            }
            let n = pkt.copy_to(&mut self.scratch[..]);
            if let Some(m) = self
                .table
                .protect(self.now, &dest, &mut self.scratch[..], n)
            {
                self.secure.push(dest, &self.scratch[..m]);
            }
        }
        if any {
            let (table, blocked) = (&self.table, &self.blocked);
            batch.retain_dest(|d| !table.is_peer(d) && !blocked.contains(d));
        }
    }

    /// The batch of answers and encrypted packets to send after the mesh's.
    pub fn secure(&mut self) -> &mut TxBatch {
        &mut self.secure
    }

    /// Timers (DTLS retransmission, consent, setup) and the sessions' events: a verified
    /// address becomes the member's audio channel in the mesh.
    pub fn tick<P: Path>(&mut self, now: Instant, mesh: &mut Mesh<P>) {
        self.now = now;
        let secure = &mut self.secure;
        self.table
            .handle_timeout(now, &mut |to, p| secure.push(to, p));
        self.events(now, mesh);
    }

    pub fn events<P: Path>(&mut self, now: Instant, mesh: &mut Mesh<P>) {
        while let Some(ev) = self.table.poll_event() {
            match ev {
                Event::Connected { tag, addr } => {
                    tracing::info!(conf = tag.conf, participant = tag.participant, %addr, "webrtc: ICE verified");
                    self.blocked.remove(&addr);
                    if let Some(old) = self.addrs.insert((tag.conf, tag.participant), addr) {
                        if old != addr {
                            self.blocked.insert(old);
                        }
                    }
                    mesh.handle_command(
                        now,
                        Command::SetChannel {
                            conf: tag.conf,
                            participant: tag.participant,
                            kind: MediaKind::Audio,
                            remote: Remote::Addr(addr),
                            ssrc: tag.ssrc,
                            clock_rate: tag.clock_rate,
                        },
                    );
                    // One address carries both kinds (BUNDLE); the sorter tells them
                    // apart by SSRC.
                    if let Some(ssrc) = tag.video_ssrc {
                        mesh.handle_command(
                            now,
                            Command::SetChannel {
                                conf: tag.conf,
                                participant: tag.participant,
                                kind: MediaKind::Video,
                                remote: Remote::Addr(addr),
                                ssrc,
                                clock_rate: protocol::codec::VIDEO_CLOCK_RATE,
                            },
                        );
                        // After the video channel: the mesh takes layers only on one.
                        if tag.simulcast[0] != 0 {
                            let layers = tag
                                .simulcast
                                .iter()
                                .copied()
                                .filter(|&s| s != 0)
                                .chain([ssrc])
                                .collect();
                            mesh.handle_command(
                                now,
                                Command::SetSimulcast {
                                    conf: tag.conf,
                                    participant: tag.participant,
                                    layers,
                                },
                            );
                        }
                    }
                }
                Event::Estimate { tag, addr, bps } => {
                    tracing::debug!(
                        conf = tag.conf,
                        participant = tag.participant,
                        bps,
                        "downlink estimate"
                    );
                    // The downlink estimate reaches the reflector as the browser's REMB.
                    let mut remb = [0u8; 24];
                    if let Some(n) = mesh::rtcp_write::remb(&mut remb, tag.ssrc, bps, &[0]) {
                        mesh.handle_datagram(now, addr, &remb[..n]);
                    }
                }
                Event::Slot { tag, slot, source } => {
                    let ev = SlotTaken {
                        conf: tag.conf,
                        participant: tag.participant,
                        slot,
                        source,
                    };
                    self.report(RtcReport::Slot(ev));
                }
                Event::Secured { tag, profile } => {
                    tracing::info!(
                        conf = tag.conf,
                        participant = tag.participant,
                        profile,
                        "webrtc: DTLS done, SRTP keyed"
                    );
                }
                Event::Closed { tag, why } => {
                    tracing::info!(
                        conf = tag.conf,
                        participant = tag.participant,
                        why,
                        "webrtc: session closed"
                    );
                    self.forget(tag);
                    self.report(RtcReport::Closed {
                        conf: tag.conf,
                        participant: tag.participant,
                    });
                }
            }
        }
    }

    fn report(&mut self, r: RtcReport) {
        // A lost `Closed` would leave an HTTP member in its room for good; they are rare.
        if self.slot_events.len() < SLOT_EVENTS || matches!(r, RtcReport::Closed { .. }) {
            self.slot_events.push(r);
        } else {
            self.slot_events_lost += 1;
        }
    }

    /// The reports since the last call, for the conference service.
    pub fn drain_reports(&mut self) -> std::vec::Drain<'_, RtcReport> {
        self.slot_events.drain(..)
    }

    /// Copies the counters out (once per tick).
    pub fn publish(&self, c: &RtcCounters) {
        c.sessions.store(self.table.len() as u64, Ordering::Relaxed);
        for (a, v) in c
            .drops
            .iter()
            .zip(values(&self.table.counters, self.oversize))
        {
            a.store(v, Ordering::Relaxed);
        }
        let t = &self.table.counters;
        c.uplink_feedback.store(t.twcc_feedback, Ordering::Relaxed);
        c.downlink_feedback
            .store(t.downlink_feedback, Ordering::Relaxed);
    }
}
