//! The dispatcher's state as a sans-IO machine: the capacity table, the conference table
//! and media server selection (seed 003, Figs. 2, 3A, 3B). Time comes in as `now`; the
//! caller does all I/O, so the rules are tested in virtual time.

use protocol::{Capabilities, Mode};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod ops;

/// A report older than this takes a server out of selection ("not in communication").
pub const REPORT_FRESH: Duration = Duration::from_secs(3);
/// A server silent for this long is out.
pub const OUT_AFTER: Duration = Duration::from_secs(10);
/// Load samples kept per server: one per report, 15 minutes.
const HISTORY: usize = 900;
/// Events kept for the API.
const EVENT_LOG: usize = 1000;

/// One row of the capacity table (seed 003, table 301/601).
#[derive(Debug, Clone)]
pub struct Server {
    pub id: String,
    pub client_addr: SocketAddr,
    pub caps: Capabilities,
    pub total: u32,
    /// Unused capacity as last reported, less users joined since.
    pub unused: u32,
    pub conferences: u32,
    pub users: u32,
    pub cpu_pct: f32,
    pub pps: u64,
    pub loss_pct: f32,
    pub last_report: Instant,
    /// Operator drain: no new conferences go here.
    pub draining: bool,
    /// Operator maintenance window, Unix seconds `[start, end)`.
    pub maintenance: Option<(u64, u64)>,
    /// One sample per report, the last 15 minutes, for the dashboard's charts.
    pub history: VecDeque<Sample>,
    /// The state last seen by [`Tables::tick`], to log changes once.
    seen: ServerState,
    silent: bool,
    /// Reservations sent that no `userjoined` has matched yet, with their expiry.
    pending: VecDeque<Instant>,
    /// Changes on every registration, so a stale link cannot remove its successor.
    pub generation: u64,
}

impl Server {
    /// Unused capacity less the reservations still on their way.
    pub fn score(&self) -> i64 {
        self.unused as i64 - self.pending.len() as i64
    }

    /// The capacity table's state column.
    pub fn state(&self, now: Instant, unix_s: u64) -> ServerState {
        match self.maintenance {
            Some((start, end)) if (start..end).contains(&unix_s) => ServerState::Maintenance,
            _ if now.saturating_duration_since(self.last_report) >= OUT_AFTER => ServerState::Out,
            _ if self.draining => ServerState::Draining,
            _ => ServerState::InService,
        }
    }

    /// A report younger than [`REPORT_FRESH`].
    pub fn in_communication(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_report) < REPORT_FRESH
    }
}

/// A server's state in the capacity table (seed 003, table 601).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerState {
    InService,
    Draining,
    Maintenance,
    Out,
}

impl ServerState {
    pub const ALL: [ServerState; 4] = [
        ServerState::InService,
        ServerState::Draining,
        ServerState::Maintenance,
        ServerState::Out,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::InService => "in-service",
            ServerState::Draining => "draining",
            ServerState::Maintenance => "maintenance",
            ServerState::Out => "out",
        }
    }
}

/// One point of a server's load history.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    pub unix_s: u64,
    pub used: u32,
    pub total: u32,
    pub pps: u64,
    pub loss_pct: f32,
    pub cpu_pct: f32,
}

/// What a punt decided: the conference moves from `from` to `to`, and each of its
/// participants must be dispatched there.
#[derive(Debug, Clone)]
pub struct Punt {
    pub from: String,
    pub to: Placement,
    pub account: String,
    /// The conference's mode: the new server must host it the same way.
    pub mode: Mode,
    pub participants: Vec<(u32, String)>,
}

/// One participant as the conference table knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub name: String,
    pub server: String,
    pub account: String,
    pub mode: Mode,
}

/// One row of the conference table (seed 003, table 300).
#[derive(Debug, Clone, Serialize)]
pub struct Conference {
    pub name: String,
    pub server: String,
    pub mode: &'static str,
    pub account: String,
    #[serde(skip)]
    pub created: Instant,
    pub created_unix: u64,
    /// Participant id -> user name, as the media server reported them.
    pub participants: BTreeMap<u32, String>,
}

impl Conference {
    /// The conference's mode as a protocol value.
    pub fn parsed_mode(&self) -> Mode {
        self.mode.parse().unwrap_or_default()
    }
}

/// Something that happened, for the API and the logs.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub unix_ms: u64,
    pub kind: &'static str,
    pub server: String,
    pub conference: String,
    pub detail: String,
    /// The operator behind an admin action; empty for the system's own events.
    pub who: String,
}

/// A media server's `report` (seed 003: capacity, conferences, users, load).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Load {
    pub unused: u32,
    pub conferences: u32,
    pub users: u32,
    pub cpu_pct: f32,
    pub pps: u64,
    pub loss_pct: f32,
}

/// A point in time in both clocks: monotonic for ages, Unix for logs and the API.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    pub now: Instant,
    pub unix_ms: u64,
}

/// Why a join could not be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    #[error("no media server in service and in communication can host {0} conferences")]
    NoServer(&'static str),
    #[error("no media server {0}")]
    UnknownServer(String),
    #[error("no conference {0}")]
    UnknownConference(String),
    #[error("no participant {1} in conference {0}")]
    UnknownParticipant(String, u32),
}

/// Where a join goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub server: String,
    pub client_addr: SocketAddr,
    pub generation: u64,
    /// The conference was not running and is being created there.
    pub created: bool,
}

/// The dispatcher's tables.
#[derive(Debug, Default)]
pub struct Tables {
    servers: BTreeMap<String, Server>,
    conferences: HashMap<String, Conference>,
    events: VecDeque<Event>,
    next_generation: u64,
}

/// Capabilities a conference of `mode` needs.
pub fn needs(mode: Mode) -> Capabilities {
    Capabilities {
        audio: true,
        reflect: mode == Mode::Reflect,
        mix: mode == Mode::Mix,
        ..Default::default()
    }
}

impl Tables {
    pub fn new() -> Self {
        Self::default()
    }

    /// A media server registered (or re-registered after a reconnect). Returns its generation.
    pub fn register(
        &mut self,
        now: Instant,
        unix_ms: u64,
        id: &str,
        client_addr: SocketAddr,
        caps: Capabilities,
        total: u32,
    ) -> u64 {
        self.next_generation += 1;
        let generation = self.next_generation;
        // Operator intent survives a reconnect.
        let (draining, maintenance, history) = match self.servers.remove(id) {
            Some(old) => (old.draining, old.maintenance, old.history),
            None => (false, None, VecDeque::new()),
        };
        self.servers.insert(
            id.to_owned(),
            Server {
                id: id.to_owned(),
                client_addr,
                caps,
                total,
                unused: total,
                conferences: 0,
                users: 0,
                cpu_pct: 0.0,
                pps: 0,
                loss_pct: 0.0,
                last_report: now,
                draining,
                maintenance,
                history,
                seen: ServerState::InService,
                silent: false,
                pending: VecDeque::new(),
                generation,
            },
        );
        self.log(
            unix_ms,
            "registered",
            id,
            "",
            format!("{client_addr} caps={caps} total={total}"),
        );
        generation
    }

    /// The registry link of `id` closed. Only the registration it made is removed, with
    /// the conferences it hosted: their clients come back and recreate them elsewhere.
    /// Returns how many conferences the server took with it.
    pub fn server_lost(&mut self, unix_ms: u64, id: &str, generation: u64) -> usize {
        if self
            .servers
            .get(id)
            .is_none_or(|s| s.generation != generation)
        {
            return 0;
        }
        self.servers.remove(id);
        let before = self.conferences.len();
        self.conferences.retain(|_, c| c.server != id);
        let lost = before - self.conferences.len();
        self.log(unix_ms, "lost", id, "", "registry link closed".into());
        if lost > 0 {
            let detail = format!("{lost} conferences; their clients come back to be placed again");
            self.log(unix_ms, "failover", id, "", detail);
        }
        lost
    }

    pub fn report(&mut self, at: Stamp, id: &str, load: Load) {
        let now = at.now;
        if let Some(s) = self.servers.get_mut(id) {
            s.unused = load.unused.min(s.total);
            s.conferences = load.conferences;
            s.users = load.users;
            s.cpu_pct = load.cpu_pct;
            s.pps = load.pps;
            s.loss_pct = load.loss_pct;
            s.last_report = now;
            if s.history.len() == HISTORY {
                s.history.pop_front();
            }
            s.history.push_back(Sample {
                unix_s: at.unix_ms / 1000,
                used: s.total.saturating_sub(s.unused),
                total: s.total,
                pps: load.pps,
                loss_pct: load.loss_pct,
                cpu_pct: load.cpu_pct,
            });
            expire(&mut s.pending, now);
        }
    }

    /// Finds or creates the conference for a join (seed 003, Fig. 2 steps 206-208).
    pub fn place(
        &mut self,
        now: Instant,
        unix_ms: u64,
        conference: &str,
        account: &str,
        mode: Mode,
        reservation_ttl: Duration,
    ) -> Result<Placement, PlaceError> {
        for s in self.servers.values_mut() {
            expire(&mut s.pending, now);
        }
        if let Some(c) = self.conferences.get(conference) {
            if let Some(s) = self.servers.get_mut(&c.server) {
                s.pending.push_back(now + reservation_ttl);
                return Ok(Placement {
                    server: s.id.clone(),
                    client_addr: s.client_addr,
                    generation: s.generation,
                    created: false,
                });
            }
        }
        let id = select(
            self.servers.values(),
            &needs(mode),
            now,
            unix_ms / 1000,
            None,
        )
        .ok_or(PlaceError::NoServer(mode.as_str()))?
        .id
        .clone();
        let s = self
            .servers
            .get_mut(&id)
            .expect("select returned a server of this table");
        s.pending.push_back(now + reservation_ttl);
        let placement = Placement {
            server: id.clone(),
            client_addr: s.client_addr,
            generation: s.generation,
            created: true,
        };
        self.conferences.insert(
            conference.to_owned(),
            Conference {
                name: conference.to_owned(),
                server: id.clone(),
                mode: mode.as_str(),
                account: account.to_owned(),
                created: now,
                created_unix: unix_ms / 1000,
                participants: BTreeMap::new(),
            },
        );
        self.log(unix_ms, "created", &id, conference, format!("mode={mode}"));
        Ok(placement)
    }

    pub fn user_joined(
        &mut self,
        at: Stamp,
        server: &str,
        conference: &str,
        participant: u32,
        name: &str,
        account: &str,
    ) {
        if let Some(s) = self.servers.get_mut(server) {
            s.pending.pop_front();
            s.unused = s.unused.saturating_sub(1);
            s.users += 1;
        }
        let c = self
            .conferences
            .entry(conference.to_owned())
            .or_insert_with(|| Conference {
                name: conference.to_owned(),
                server: server.to_owned(),
                mode: Mode::Reflect.as_str(),
                account: account.to_owned(),
                created: at.now,
                created_unix: at.unix_ms / 1000,
                participants: BTreeMap::new(),
            });
        c.participants.insert(participant, name.to_owned());
        let unix_ms = at.unix_ms;
        self.log(
            unix_ms,
            "userjoined",
            server,
            conference,
            format!("{participant} {name}"),
        );
    }

    pub fn user_left(
        &mut self,
        unix_ms: u64,
        server: &str,
        conference: &str,
        participant: u32,
        name: &str,
    ) {
        if let Some(s) = self.servers.get_mut(server) {
            s.unused = (s.unused + 1).min(s.total);
            s.users = s.users.saturating_sub(1);
        }
        // After a punt the entry belongs to the new server; the old one's leaves are not its.
        if let Some(c) = self
            .conferences
            .get_mut(conference)
            .filter(|c| c.server == server)
        {
            c.participants.remove(&participant);
        }
        self.log(
            unix_ms,
            "userleft",
            server,
            conference,
            format!("{participant} {name}"),
        );
    }

    pub fn conf_deleted(&mut self, unix_ms: u64, server: &str, conference: &str) {
        if self
            .conferences
            .get(conference)
            .is_some_and(|c| c.server == server)
        {
            self.conferences.remove(conference);
        }
        self.log(unix_ms, "confdeleted", server, conference, String::new());
    }

    pub fn servers(&self) -> impl Iterator<Item = &Server> {
        self.servers.values()
    }

    pub fn conferences(&self) -> impl Iterator<Item = &Conference> {
        self.conferences.values()
    }

    pub fn conference(&self, name: &str) -> Option<&Conference> {
        self.conferences.get(name)
    }

    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    fn log(
        &mut self,
        unix_ms: u64,
        kind: &'static str,
        server: &str,
        conference: &str,
        detail: String,
    ) {
        self.log_by(unix_ms, kind, server, conference, detail, "");
    }

    /// Records an event, with the operator behind it for admin actions.
    pub fn log_by(
        &mut self,
        unix_ms: u64,
        kind: &'static str,
        server: &str,
        conference: &str,
        detail: String,
        who: &str,
    ) {
        tracing::info!(kind, server, conference, %detail, who, "event");
        if self.events.len() == EVENT_LOG {
            self.events.pop_front();
        }
        self.events.push_back(Event {
            unix_ms,
            kind,
            server: server.to_owned(),
            conference: conference.to_owned(),
            detail,
            who: who.to_owned(),
        });
    }
}

pub(crate) fn expire(pending: &mut VecDeque<Instant>, now: Instant) {
    while pending.front().is_some_and(|&t| t <= now) {
        pending.pop_front();
    }
}

/// Seed 003's selection: in service (not draining, not in a maintenance window), has the capabilities, in communication (a report
/// younger than [`REPORT_FRESH`]), then the greatest unused capacity. Ties go to the
/// lowest id so that placement is reproducible.
pub fn select<'a>(
    servers: impl Iterator<Item = &'a Server>,
    need: &Capabilities,
    now: Instant,
    unix_s: u64,
    exclude: Option<&str>,
) -> Option<&'a Server> {
    servers
        .filter(|s| s.state(now, unix_s) == ServerState::InService)
        .filter(|s| s.caps.covers(need))
        .filter(|s| s.in_communication(now))
        .filter(|s| Some(s.id.as_str()) != exclude)
        .fold(None, |best: Option<&Server>, s| match best {
            Some(b) if b.score() >= s.score() => Some(b),
            _ => Some(s),
        })
}

#[cfg(test)]
mod tests;
