//! The conference service: the one owner of this server's room lifecycle (create, join,
//! leave, delete, punt, drain, move) and the only sender of commands to the media workers.
//!
//! The adapters only parse and call it: `host` (client sessions over TCP and WebSocket),
//! `dispatchee` (the registry link) and `http`. A worker whose command queue is full is an
//! error the service handles and counts: a join that cannot be applied is refused and
//! leaves nothing behind, a line that cannot be applied is answered with `error`, and
//! teardown commands (a leave, a deleted room) are kept and sent again, so the control
//! plane never falls out of step with the mesh.

mod browser;
mod http_members;
mod join;
mod links;
mod moderate;
mod punt;
mod record;
mod report;
mod rooms;
mod shards;
mod tickets;

pub(crate) use punt::drain;
pub use punt::Drained;

use crate::path::MediaPath;
use crate::worker::WorkerHandle;
use crate::Settings;
use mesh::Command;
use protocol::{ErrorCode, MsMsg, Quality, ServerMsg};
use report::Meter;
use rooms::Rooms;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

pub(crate) use join::{JoinRequest, Membership};
pub(crate) use report::cpu_seconds;

/// Lines queued for the dispatcher before the link is resynchronised instead.
pub(crate) const NOTIFY_QUEUE: usize = 4096;

pub(crate) fn unix_now() -> u64 {
    unix_ms() / 1000
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A line the service refuses: `Fatal` ends the client's session, `Reply` only answers.
#[derive(Debug)]
pub(crate) enum Refusal {
    Fatal(ServerMsg),
    Reply(ServerMsg),
}

impl Refusal {
    /// The line that says why.
    pub(crate) fn line(&self) -> &ServerMsg {
        match self {
            Refusal::Fatal(m) | Refusal::Reply(m) => m,
        }
    }
}

/// Counters of the service, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct ServiceStats {
    /// Commands a full worker queue refused.
    pub worker_queue_full: AtomicU64,
    /// Joins refused because their worker's queue was full.
    pub joins_refused_busy: AtomicU64,
    /// Joins refused because their ticket was already used (or its holder kicked).
    pub joins_refused_ticket_used: AtomicU64,
    /// Teardown commands sent again after a full queue.
    pub commands_retried: AtomicU64,
    /// Times the dispatcher queue overflowed and the link was resynchronised.
    pub notify_overflows: AtomicU64,
    /// Moderator and operator actions applied (mute, kick, lock, end).
    pub moderations: AtomicU64,
    /// Chat lines delivered, and refused over a member's rate.
    pub chat_lines: AtomicU64,
    pub chat_refused: AtomicU64,
}

/// The conference service of one media server.
pub(crate) struct Conferences {
    settings: Settings,
    /// Where clients reach us, as registered with the dispatcher.
    client_addr: SocketAddr,
    /// Where WebSocket clients reach our control lines.
    ws_url: Option<String>,
    workers: Vec<WorkerHandle>,
    rooms: Mutex<Rooms>,
    /// Lines for the dispatcher, bounded; an overflow asks for a resync instead.
    notify: mpsc::Sender<MsMsg>,
    resync: AtomicBool,
    /// Set by a drain: no new conferences, and the dispatcher is told on every register.
    draining: AtomicBool,
    /// When each conference's last `punt` request went out, to keep one in flight.
    punts: Mutex<HashMap<String, Instant>>,
    /// Teardown commands a full queue refused, by worker, sent again before anything else.
    deferred: Mutex<Vec<(usize, Command<MediaPath>)>>,
    meter: Mutex<Meter>,
    /// Tickets accepted here (and kicked members'), until they expire: each is good for
    /// one join. Locked after `rooms` when both are held.
    spent: Mutex<tickets::SpentTickets>,
    /// WHIP and WHEP resources by id.
    resources: Mutex<HashMap<String, http_members::Resource>>,
    /// The compositor of `composite` conferences, on a server that carries video.
    compositor: Option<crate::composite::Service>,
    pub recording_stats: Arc<crate::recording::RecordingStats>,
    pub stats: ServiceStats,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic under one of these locks would be a bug in a plain collection update;
    // keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Conferences {
    pub(crate) fn new(
        settings: Settings,
        client_addr: SocketAddr,
        ws_url: Option<String>,
        workers: Vec<WorkerHandle>,
    ) -> (Self, mpsc::Receiver<MsMsg>) {
        let (notify, rx) = mpsc::channel(NOTIFY_QUEUE);
        let c = Conferences {
            settings,
            client_addr,
            ws_url,
            workers,
            rooms: Mutex::new(Rooms::default()),
            notify,
            resync: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            punts: Mutex::new(HashMap::new()),
            deferred: Mutex::new(Vec::new()),
            meter: Mutex::new(Meter::new()),
            spent: Mutex::new(tickets::SpentTickets::default()),
            resources: Mutex::new(HashMap::new()),
            compositor: None,
            recording_stats: Default::default(),
            stats: ServiceStats::default(),
        };
        let mut c = c;
        if c.settings.video {
            // Half the cores decode and encode composites; the packet workers keep theirs.
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get() / 2);
            match crate::composite::Service::start(threads) {
                Ok(s) => c.compositor = Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "no compositor: composite conferences get audio only")
                }
            }
        }
        (c, rx)
    }

    /// The compositor service's counters, on a server that composites.
    pub(crate) fn compositor_stats(&self) -> Option<&crate::composite::ServiceStats> {
        self.compositor.as_ref().map(|c| &*c.stats)
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    pub(crate) fn workers(&self) -> &[WorkerHandle] {
        &self.workers
    }

    fn rooms(&self) -> MutexGuard<'_, Rooms> {
        lock(&self.rooms)
    }

    /// Queues a line for the dispatcher. A full queue means the link is stuck: the line is
    /// dropped and the link resynchronises (re-registers with the whole roster).
    fn notify(&self, msg: MsMsg) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.notify.try_send(msg) {
            if !self.resync.swap(true, Ordering::Relaxed) {
                self.stats.notify_overflows.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("dispatcher queue full; the registry link will resynchronise");
            }
        }
    }

    /// Whether the registry link must be re-established (and clears the request).
    pub(crate) fn take_resync(&self) -> bool {
        self.resync.swap(false, Ordering::Relaxed)
    }

    /// Sends a command to a worker; a full queue is counted and handed back.
    fn command(&self, worker: usize, cmd: Command<MediaPath>) -> Result<(), Command<MediaPath>> {
        let Some(w) = self.workers.get(worker) else {
            return Err(cmd);
        };
        w.send(cmd).inspect_err(|_| {
            self.stats.worker_queue_full.fetch_add(1, Ordering::Relaxed);
        })
    }

    /// A command the client asked for; a full queue answers `error` and changes nothing.
    fn apply(&self, worker: usize, cmd: Command<MediaPath>) -> Result<(), Refusal> {
        self.command(worker, cmd).map_err(|_| {
            Refusal::Reply(ServerMsg::Error {
                code: ErrorCode::Internal,
                text: "media worker busy; not applied, try again".into(),
            })
        })
    }

    /// A teardown command: it must reach the worker, so a full queue keeps it for later.
    fn teardown(&self, worker: usize, cmd: Command<MediaPath>) {
        let mut deferred = lock(&self.deferred);
        // Order matters per worker: nothing overtakes what is already waiting.
        if deferred.iter().any(|(w, _)| *w == worker) {
            deferred.push((worker, cmd));
            return;
        }
        if let Err(cmd) = self.command(worker, cmd) {
            deferred.push((worker, cmd));
        }
    }

    /// Sends the deferred teardown commands again, in order.
    fn flush_deferred(&self) {
        let mut deferred = lock(&self.deferred);
        let mut blocked: Vec<usize> = Vec::new();
        let mut keep = Vec::new();
        for (w, cmd) in deferred.drain(..) {
            if blocked.contains(&w) {
                keep.push((w, cmd));
                continue;
            }
            match self.command(w, cmd) {
                Ok(()) => {
                    self.stats.commands_retried.fetch_add(1, Ordering::Relaxed);
                }
                Err(cmd) => {
                    blocked.push(w);
                    keep.push((w, cmd));
                }
            }
        }
        *deferred = keep;
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// A `reserve` from the dispatcher: the room is created if needed and the user expected.
    pub(crate) fn reserve(
        &self,
        conference: &str,
        user: String,
        mode: protocol::Mode,
        expires: u64,
    ) {
        let mut rooms = self.rooms();
        match self.ensure_room(&mut rooms, conference, mode) {
            Ok(_) => {
                if let Some(room) = rooms.get_mut(conference) {
                    room.reserve(user, expires);
                }
            }
            Err(e) => {
                tracing::error!(conference, reply = %e.encode().trim_end(), "reserve failed")
            }
        }
    }

    /// A `dispatch` from the dispatcher for one of our members (a punt, or a move to
    /// conference `to`): a member on a WebSocket is sent the target's WebSocket URL.
    pub(crate) fn dispatch_member(
        &self,
        conference: &str,
        participant: u32,
        addr: SocketAddr,
        ws: Option<String>,
        ticket: String,
        to: Option<String>,
    ) {
        let rooms = self.rooms();
        let Some(m) = rooms.get(conference).and_then(|r| r.member(participant)) else {
            tracing::warn!(conference, participant, "dispatch for someone not here");
            return;
        };
        let target = protocol::Endpoint::for_client(
            m.outbox.transport() == control::Transport::WebSocket,
            addr,
            ws,
        );
        tracing::info!(conference, participant, %target, "dispatching participant");
        let order = ServerMsg::Dispatch {
            addr: target,
            ticket,
            conference: to,
        };
        m.outbox.send(order.encode());
    }

    /// `userjoined` for everyone present, earliest first in each room, with what the
    /// dispatcher bills by: a (re)started dispatcher, or the one we moved to when ours
    /// failed, learns the roster and writes the usage lines the old one would have.
    pub(crate) fn roster(&self) -> Vec<MsMsg> {
        let rooms = self.rooms();
        rooms
            .iter()
            .flat_map(|(name, room)| {
                room.members()
                    .iter()
                    .map(|(id, m)| room.announce(name, *id, m))
            })
            .collect()
    }

    /// What a registry link says first: who we are, our state, everyone present.
    pub(crate) fn registration(&self) -> Vec<MsMsg> {
        let mut lines = vec![MsMsg::Register {
            id: self.settings.id.clone(),
            client_addr: self.client_addr,
            caps: protocol::Capabilities {
                audio: true,
                // Video is forwarded in both modes (hybrid in mix rooms), unless the operator
                // keeps this server for audio (the dispatcher rations video servers).
                video: self.settings.video,
                reflect: true,
                mix: true,
                // The compositor draws video: only on a server that carries video.
                composite: self.settings.video,
            },
            total: self.settings.capacity,
            ws: self.ws_url.clone(),
        }];
        if self.is_draining() {
            // A dispatcher we reconnect to must not place new conferences here either.
            lines.push(MsMsg::State { draining: true });
        }
        lines.extend(self.roster());
        lines.push(self.report());
        lines
    }

    /// The periodic work of the registry link's clock (every second): teardown commands
    /// sent again, expired reservations and idle rooms dropped, the high-water check.
    pub(crate) fn tick(&self, now: Instant) {
        self.flush_deferred();
        self.sweep();
        self.high_water(now);
    }

    /// Drops expired reservations and deletes rooms nobody joined.
    pub(crate) fn sweep(&self) {
        let now = unix_now();
        lock(&self.spent).sweep(now);
        let mut rooms = self.rooms();
        let idle: Vec<String> = rooms
            .iter_mut()
            .filter_map(|(name, room)| {
                room.expire(now);
                room.is_idle().then(|| name.clone())
            })
            .collect();
        for name in idle {
            self.delete_room(&mut rooms, &name);
        }
    }

    /// Deletes a room and tells the dispatcher (seed 003: "deleted when the last client
    /// exits").
    fn delete_room(&self, rooms: &mut Rooms, conference: &str) {
        if let Some(mut room) = rooms.remove(conference) {
            for link in room.links.values() {
                link.close();
            }
            self.end_recording(conference, &mut room);
            for (worker, conf) in room.places() {
                self.teardown(worker, Command::RemoveConference { conf });
            }
            self.notify(MsMsg::ConfDeleted {
                conference: conference.to_owned(),
            });
            tracing::info!(conference, "conference deleted");
        }
    }

    /// Turns a worker's mesh event into control lines: `speaking` to every member when a
    /// talk run starts or stops, `quality` to every member when a member's light changes,
    /// the `level` lines of one period together, and `dominant` when the floor changes.
    pub(crate) fn on_mesh_event(&self, worker: usize, ev: mesh::Event) {
        let mut rooms = self.rooms();
        // A room spread over workers hears of a member from every part: its own part's
        // word counts; the room-wide indicators come from the first part.
        let own = |room: &rooms::Room, participant: u32| {
            room.shard_at(worker, conf_of(&ev)) == Some(room.home(participant))
        };
        let first = |room: &rooms::Room| room.shard_at(worker, conf_of(&ev)) == Some(0);
        match ev {
            mesh::Event::Speaking {
                conf,
                participant,
                on,
            } => {
                if let Some(room) = rooms.by_conf(worker, conf).filter(|r| own(r, participant)) {
                    room.set_speaking(participant, on);
                    room.broadcast(&ServerMsg::Speaking { participant, on }, None);
                }
            }
            mesh::Event::Quality {
                conf,
                participant,
                loss_permille,
                jitter_ms,
            } => {
                let Some(room) = rooms.by_conf(worker, conf).filter(|r| own(r, participant)) else {
                    return;
                };
                let q = Quality::from_loss_jitter(
                    f64::from(loss_permille) / 10.0,
                    f64::from(jitter_ms),
                );
                if room.set_quality(participant, q) {
                    room.broadcast(
                        &ServerMsg::Quality {
                            participant,
                            quality: q,
                        },
                        None,
                    );
                }
            }
            mesh::Event::Levels { conf, levels } => {
                if let Some(room) = rooms.by_conf(worker, conf).filter(|r| first(r)) {
                    let lines: Vec<bytes::Bytes> = levels
                        .iter()
                        .map(|(participant, dbov)| {
                            ServerMsg::Level { participant, dbov }.encode().into()
                        })
                        .collect();
                    room.broadcast_lines(&lines);
                }
            }
            mesh::Event::Dominant { conf, participant } => {
                if let Some(room) = rooms.by_conf(worker, conf).filter(|r| first(r)) {
                    if room.set_dominant(participant) {
                        room.broadcast(&ServerMsg::Dominant { participant }, None);
                        if let Some(c) = &room.composite {
                            c.set_speaker(Some(participant));
                        }
                        let name = rooms.name_of(worker, conf).map(str::to_owned);
                        drop(rooms);
                        if let Some(name) = name {
                            self.refollow(&name, participant);
                        }
                    }
                }
            }
            ev => tracing::info!(worker, event = ?ev, "mesh event"),
        }
    }

    /// (users, conferences) here now.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize) {
        let rooms = self.rooms();
        (rooms.users(), rooms.len())
    }
}

#[cfg(test)]
mod tests;

/// The conference a mesh event is about.
fn conf_of(ev: &mesh::Event) -> mesh::ConfId {
    match *ev {
        mesh::Event::Latched { conf, .. }
        | mesh::Event::Speaking { conf, .. }
        | mesh::Event::Quality { conf, .. }
        | mesh::Event::Levels { conf, .. }
        | mesh::Event::Dominant { conf, .. } => conf,
    }
}
