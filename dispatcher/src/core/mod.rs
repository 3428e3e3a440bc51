//! The dispatcher's state as a sans-IO machine: the capacity table, the conference table
//! and media server selection (seed 003, Figs. 2, 3A, 3B). Time comes in as `now`; the
//! caller does all I/O, so the rules are tested in virtual time.

use protocol::{Capabilities, Mode};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod cost;
mod ops;
mod place;
mod recordings;
pub mod select;
pub use recordings::Recording;
mod shared;
mod spread;
pub use spread::LinkTo;

pub use cost::{needs, Media};
pub use ops::COMEBACK;
pub use place::{Join, Seated, Usage};
pub use protocol::CostModel;
pub use select::{choose, Request, Skip};
pub use shared::RemoteRow;

/// Servers named in no pool are in this one; so is everyone whose domain and account
/// name no pool.
pub const DEFAULT_POOL: &str = "default";

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
    /// Where WebSocket clients reach its control lines (`register ... ws=`).
    pub ws_url: Option<String>,
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
    pending: VecDeque<Pending>,
    /// The units those reservations charge (the ramp-up charge).
    pending_units: u64,
    /// Units held for contracted conferences beyond their present users (seed 003: a
    /// contracted conference counts as if its reserved users were there).
    pub reserve_units: u32,
    /// The tenant pool the server serves.
    pub pool: String,
    /// Conferences the conference table has on this server (reports lag; this does not).
    pub hosted: u32,
    /// Changes on every registration, so a stale link cannot remove its successor.
    pub generation: u64,
}

impl Server {
    /// Unused capacity less the contracted reserve and the reservations still on their
    /// way, in capacity units.
    pub fn score(&self) -> i64 {
        i64::from(self.unused) - i64::from(self.reserve_units) - self.pending_units as i64
    }

    /// Reservations sent and not yet matched by a `userjoined`.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn push_pending(&mut self, p: Pending) {
        self.pending_units += u64::from(p.units);
        self.pending.push_back(p);
    }

    /// A `userjoined` settles the oldest reservation of its conference (any, if none
    /// matches: the join may have come without one, e.g. after a failover).
    fn settle_pending(&mut self, conference: &str) {
        let i = self
            .pending
            .iter()
            .position(|p| p.conference == conference)
            .unwrap_or(0);
        if let Some(p) = self.pending.remove(i) {
            self.pending_units -= u64::from(p.units);
        }
    }

    fn expire(&mut self, now: Instant) {
        while self.pending.front().is_some_and(|p| p.expires <= now) {
            if let Some(p) = self.pending.pop_front() {
                self.pending_units -= u64::from(p.units);
            }
        }
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

/// A reservation in flight: a client dispatched to a server that has not said
/// `userjoined` yet.
#[derive(Debug, Clone)]
struct Pending {
    expires: Instant,
    /// Ramp-up charge in capacity units.
    units: u32,
    conference: String,
    /// Counts against the customer's maximum until it joins or expires.
    customer: String,
}

/// A participant punted away whose stay on the old server is still open: it ends with
/// that server's `userleft`, or when that server is lost.
#[derive(Debug, Clone)]
pub struct Moved {
    pub server: String,
    pub participant: u32,
    pub joined_unix_ms: u64,
    pub name: String,
}

/// One row of the conference table (seed 003, table 300).
#[derive(Debug, Clone, Serialize)]
pub struct Conference {
    pub name: String,
    pub server: String,
    pub mode: &'static str,
    /// `audio` or `audio,video`.
    pub media: &'static str,
    pub account: String,
    pub customer: String,
    /// The tenant pool it runs in; empty: placed without a pool (operator moves).
    pub tenant: String,
    /// Capacity units one participant costs.
    pub units_per_user: u32,
    /// Contracted users: the conference is charged as if at least this many were present.
    pub reserved: u32,
    /// Members per server before it spreads (0: only when full), from the account.
    pub spread: u32,
    /// Participant id -> Unix ms of its `userjoined`, for the usage log.
    #[serde(skip)]
    pub joined: HashMap<u32, u64>,
    /// Participants punted away whose old server's `userleft` is still to come:
    /// (old server, participant id, joined Unix ms), so that stay is billed too.
    #[serde(skip)]
    pub moved: Vec<Moved>,
    #[serde(skip)]
    pub created: Instant,
    pub created_unix: u64,
    /// Participant id -> user name, as the media server reported them.
    pub participants: BTreeMap<u32, String>,
    /// Cascading: the other servers the conference spreads to, each with its roster
    /// (participant ids are per server).
    pub links: BTreeMap<String, BTreeMap<u32, String>>,
    /// (linked server, participant) -> Unix ms of its `userjoined`, for the usage log.
    #[serde(skip)]
    pub link_joined: HashMap<(String, u32), u64>,
}

impl Conference {
    /// The conference's mode as a protocol value.
    pub fn parsed_mode(&self) -> Mode {
        self.mode.parse().unwrap_or_default()
    }

    /// One participant's stay in this conference, for the usage log.
    pub fn stay(&self, user: &str, server: &str, joined_unix_ms: u64, left_unix_ms: u64) -> Usage {
        Usage {
            account: self.account.clone(),
            customer: self.customer.clone(),
            tenant: self.tenant.clone(),
            conference: self.name.clone(),
            user: user.to_owned(),
            server: server.to_owned(),
            joined_unix_ms,
            left_unix_ms,
            media: self.media,
            mode: self.mode,
        }
    }

    /// Units held beyond the present users to honour the contract.
    pub fn reserve_units(&self) -> u32 {
        let present = u32::try_from(self.participants.len()).unwrap_or(u32::MAX);
        self.units_per_user
            .saturating_mul(self.reserved.saturating_sub(present))
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
    #[error("no media server {}", protocol::clip(.0))]
    UnknownServer(String),
    #[error("conference {} is not moved: it spreads over linked servers instead", protocol::clip(.0))]
    Spreads(String),
    #[error("no conference {}", protocol::clip(.0))]
    UnknownConference(String),
    #[error("no participant {} in conference {}", .1, protocol::clip(.0))]
    UnknownParticipant(String, u32),
    #[error("customer {customer} is at its maximum of {max} simultaneous users")]
    OverLimit { customer: String, max: u32 },
}

/// Where a join goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub server: String,
    pub client_addr: SocketAddr,
    /// The server's WebSocket URL, for clients that joined over a WebSocket.
    pub ws_url: Option<String>,
    pub generation: u64,
    /// The conference was not running and is being created there.
    pub created: bool,
    /// Cascading: the conference spreads to `server` now; it must link with each of these.
    pub links: Vec<LinkTo>,
}

/// The rules the tables apply that come from the config: the cost model and which
/// pool each server is in.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub cost: CostModel,
    /// Server id -> pool name; servers not named are in [`DEFAULT_POOL`].
    pub pools: HashMap<String, String>,
}

/// The dispatcher's tables.
#[derive(Debug)]
pub struct Tables {
    servers: BTreeMap<String, Server>,
    conferences: HashMap<String, Conference>,
    events: VecDeque<Event>,
    next_generation: u64,
    policy: Policy,
    /// Joined users per customer, for the contract's maximum.
    customers: HashMap<String, u32>,
    /// Breaks selection ties; seeded by the caller so tests replay.
    rng: StdRng,
    /// Stays ended without a `userleft` (their server was lost), for the usage log.
    stays: Vec<Usage>,
    /// Servers lost while in service, by id, until they register again or
    /// [`ops::COMEBACK`] passes: a join that finds no server while one may be restarting
    /// is told to retry rather than that no server exists.
    lost: BTreeMap<String, Lost>,
    /// Recordings media servers reported, newest last (bounded).
    recordings: VecDeque<Recording>,
}

/// A server whose link closed while it was in service: it may be restarting.
#[derive(Debug, Clone)]
struct Lost {
    unix_ms: u64,
    caps: Capabilities,
    pool: String,
}

impl Default for Tables {
    fn default() -> Self {
        Tables::with_policy(Policy::default(), 0)
    }
}

impl Tables {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tables applying `policy`, breaking ties with an RNG seeded with `seed`.
    pub fn with_policy(policy: Policy, seed: u64) -> Self {
        Tables {
            servers: BTreeMap::new(),
            conferences: HashMap::new(),
            events: VecDeque::new(),
            next_generation: 0,
            policy,
            customers: HashMap::new(),
            rng: StdRng::seed_from_u64(seed),
            stays: Vec::new(),
            lost: BTreeMap::new(),
            recordings: VecDeque::new(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The pool a server is in.
    pub fn pool_of(&self, id: &str) -> &str {
        self.policy
            .pools
            .get(id)
            .map_or(DEFAULT_POOL, String::as_str)
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
        let pool = self.pool_of(id).to_owned();
        self.lost.remove(id);
        // Operator intent survives a reconnect.
        // Conferences the old registration hosted stay in the table, with their reserve.
        let (draining, maintenance, history, hosted, reserve_units) = match self.servers.remove(id)
        {
            Some(old) => (
                old.draining,
                old.maintenance,
                old.history,
                old.hosted,
                old.reserve_units,
            ),
            None => (false, None, VecDeque::new(), 0, 0),
        };
        self.servers.insert(
            id.to_owned(),
            Server {
                id: id.to_owned(),
                client_addr,
                ws_url: None,
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
                pending_units: 0,
                reserve_units,
                hosted,
                pool,
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

    /// Records where WebSocket clients reach server `id` (from its `register`).
    pub fn set_ws_url(&mut self, id: &str, url: Option<String>) {
        if let Some(s) = self.servers.get_mut(id) {
            s.ws_url = url;
        }
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
        self.recordings_lost(unix_ms, id);
        if let Some(s) = self.servers.remove(id) {
            // A server that drained on purpose is not coming back soon.
            if !s.draining {
                let lost = Lost {
                    unix_ms,
                    caps: s.caps,
                    pool: s.pool,
                };
                self.lost.insert(id.to_owned(), lost);
            }
        }
        let before = self.conferences.len();
        let customers = &mut self.customers;
        let stays = &mut self.stays;
        self.conferences.retain(|_, c| {
            // Stays of members punted away from this server end now too: its `userleft`s
            // will never come.
            let mut i = 0;
            while i < c.moved.len() {
                if c.moved[i].server == id {
                    let m = c.moved.swap_remove(i);
                    stays.push(c.stay(&m.name, id, m.joined_unix_ms, unix_ms));
                } else {
                    i += 1;
                }
            }
            if c.server != id && !c.links.contains_key(id) {
                return true;
            }
            if c.server != id {
                // A linked server died: its members fail over; the rest keep the room.
                let roster = c.links.remove(id).unwrap_or_default();
                uncount(customers, &c.customer, roster.len());
                for (p, name) in &roster {
                    let joined = c
                        .link_joined
                        .remove(&(id.to_owned(), *p))
                        .unwrap_or(unix_ms);
                    stays.push(c.stay(name, id, joined, unix_ms));
                }
                return true;
            }
            uncount(customers, &c.customer, c.participants.len());
            // Nobody will say `userleft` for these: their stays end now.
            for (p, name) in &c.participants {
                let joined = c.joined.get(p).copied().unwrap_or(unix_ms);
                stays.push(c.stay(name, id, joined, unix_ms));
            }
            // A conference that spreads lives on where it is linked.
            spread::promote(c)
        });
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
            s.expire(now);
        }
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

/// Takes `n` joined users off a customer's count.
fn uncount(customers: &mut HashMap<String, u32>, customer: &str, n: usize) {
    if let Some(c) = customers.get_mut(customer) {
        *c = c.saturating_sub(u32::try_from(n).unwrap_or(u32::MAX));
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_herding;
#[cfg(test)]
mod tests_replay;
#[cfg(test)]
mod tests_select;
#[cfg(test)]
mod tests_spread;
