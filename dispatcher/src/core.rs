//! The dispatcher's state as a sans-IO machine: the capacity table, the conference table
//! and media server selection (seed 003, Figs. 2, 3A, 3B). Time comes in as `now`; the
//! caller does all I/O, so the rules are tested in virtual time.

use protocol::{Capabilities, Mode};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A report older than this takes a server out of selection ("not in communication").
pub const REPORT_FRESH: Duration = Duration::from_secs(3);
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
    pub last_report: Instant,
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

/// Something that happened, for the API and the logs.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub unix_ms: u64,
    pub kind: &'static str,
    pub server: String,
    pub conference: String,
    pub detail: String,
}

/// A media server's `report` (seed 003: capacity, conferences, users, load).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Load {
    pub unused: u32,
    pub conferences: u32,
    pub users: u32,
    pub cpu_pct: f32,
    pub pps: u64,
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
                last_report: now,
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
    pub fn server_lost(&mut self, unix_ms: u64, id: &str, generation: u64) {
        if self
            .servers
            .get(id)
            .is_some_and(|s| s.generation == generation)
        {
            self.servers.remove(id);
            self.conferences.retain(|_, c| c.server != id);
            self.log(unix_ms, "lost", id, "", String::new());
        }
    }

    pub fn report(&mut self, now: Instant, id: &str, load: Load) {
        if let Some(s) = self.servers.get_mut(id) {
            s.unused = load.unused.min(s.total);
            s.conferences = load.conferences;
            s.users = load.users;
            s.cpu_pct = load.cpu_pct;
            s.pps = load.pps;
            s.last_report = now;
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
        let id = select(self.servers.values(), &needs(mode), now)
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
        if let Some(c) = self.conferences.get_mut(conference) {
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
        tracing::info!(kind, server, conference, %detail, "event");
        if self.events.len() == EVENT_LOG {
            self.events.pop_front();
        }
        self.events.push_back(Event {
            unix_ms,
            kind,
            server: server.to_owned(),
            conference: conference.to_owned(),
            detail,
        });
    }
}

fn expire(pending: &mut VecDeque<Instant>, now: Instant) {
    while pending.front().is_some_and(|&t| t <= now) {
        pending.pop_front();
    }
}

/// Seed 003's selection: in service, has the capabilities, in communication (a report
/// younger than [`REPORT_FRESH`]), then the greatest unused capacity. Ties go to the
/// lowest id so that placement is reproducible.
pub fn select<'a>(
    servers: impl Iterator<Item = &'a Server>,
    need: &Capabilities,
    now: Instant,
) -> Option<&'a Server> {
    servers
        .filter(|s| s.caps.covers(need))
        .filter(|s| now.saturating_duration_since(s.last_report) < REPORT_FRESH)
        .fold(None, |best: Option<&Server>, s| match best {
            Some(b) if b.score() >= s.score() => Some(b),
            _ => Some(s),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(30);

    fn caps(video: bool) -> Capabilities {
        Capabilities {
            audio: true,
            video,
            reflect: true,
            ..Default::default()
        }
    }

    fn load(unused: u32, conferences: u32, users: u32) -> Load {
        Load {
            unused,
            conferences,
            users,
            ..Load::default()
        }
    }

    fn two_servers(t0: Instant) -> Tables {
        let mut t = Tables::new();
        t.register(t0, 0, "a", "127.0.0.1:1".parse().unwrap(), caps(false), 100);
        t.register(t0, 0, "b", "127.0.0.1:2".parse().unwrap(), caps(false), 100);
        t
    }

    #[test]
    fn new_conference_goes_to_greatest_unused_capacity() {
        let t0 = Instant::now();
        let mut t = two_servers(t0);
        t.report(t0, "a", load(40, 3, 60));
        t.report(t0, "b", load(90, 1, 10));
        let p = t.place(t0, 0, "xyz", "demo", Mode::Reflect, TTL).unwrap();
        assert_eq!(p.server, "b");
        assert!(p.created);
    }

    #[test]
    fn existing_conference_stays_where_it_runs() {
        let t0 = Instant::now();
        let mut t = two_servers(t0);
        t.report(t0, "a", load(10, 1, 90));
        let first = t.place(t0, 0, "xyz", "demo", Mode::Reflect, TTL).unwrap();
        assert_eq!(first.server, "b");
        t.report(t0, "b", load(5, 1, 95));
        let again = t.place(t0, 0, "xyz", "demo", Mode::Reflect, TTL).unwrap();
        assert_eq!(again.server, "b");
        assert!(!again.created);
    }

    #[test]
    fn reservations_count_before_reports_arrive() {
        // Two servers look equal; the first join's reservation must push the next
        // new conference to the other server, not herd both onto one.
        let t0 = Instant::now();
        let mut t = two_servers(t0);
        let p1 = t.place(t0, 0, "one", "demo", Mode::Reflect, TTL).unwrap();
        let p2 = t.place(t0, 0, "two", "demo", Mode::Reflect, TTL).unwrap();
        assert_ne!(p1.server, p2.server);
        // The joins land; unused capacity follows userjoined until the next report.
        t.user_joined(
            Stamp {
                now: t0,
                unix_ms: 0,
            },
            &p1.server,
            "one",
            1,
            "ann",
            "demo",
        );
        t.user_joined(
            Stamp {
                now: t0,
                unix_ms: 0,
            },
            &p2.server,
            "two",
            2,
            "bob",
            "demo",
        );
        let s = t.servers().find(|s| s.id == p1.server).unwrap();
        assert_eq!((s.unused, s.score()), (99, 99));
    }

    #[test]
    fn reservations_expire() {
        let t0 = Instant::now();
        let mut t = two_servers(t0);
        t.place(t0, 0, "one", "demo", Mode::Reflect, TTL).unwrap();
        let a = t.servers().find(|s| s.id == "a").unwrap();
        assert_eq!(a.score(), 99);
        let later = t0 + TTL + Duration::from_secs(1);
        t.report(later, "a", load(100, 0, 0));
        t.report(later, "b", load(100, 0, 0));
        let a = t.servers().find(|s| s.id == "a").unwrap();
        assert_eq!(a.score(), 100);
    }

    #[test]
    fn stale_and_incapable_servers_are_skipped() {
        let t0 = Instant::now();
        let mut t = two_servers(t0);
        let later = t0 + Duration::from_secs(5);
        t.report(later, "a", load(1, 0, 99));
        // b has more unused capacity but its last report is 5 s old.
        let p = t
            .place(later, 0, "xyz", "demo", Mode::Reflect, TTL)
            .unwrap();
        assert_eq!(p.server, "a");
        // Nobody can mix.
        let e = t
            .place(later, 0, "mixed", "demo", Mode::Mix, TTL)
            .unwrap_err();
        assert_eq!(e, PlaceError::NoServer("mix"));
        // Nobody in communication at all.
        let much_later = t0 + Duration::from_secs(60);
        assert!(t
            .place(much_later, 0, "new", "demo", Mode::Reflect, TTL)
            .is_err());
    }

    #[test]
    fn roster_and_deletion_update_the_conference_table() {
        let t0 = Instant::now();
        let mut t = two_servers(t0);
        let p = t.place(t0, 0, "xyz", "demo", Mode::Reflect, TTL).unwrap();
        t.user_joined(
            Stamp {
                now: t0,
                unix_ms: 1,
            },
            &p.server,
            "xyz",
            1,
            "ann",
            "demo",
        );
        t.user_joined(
            Stamp {
                now: t0,
                unix_ms: 2,
            },
            &p.server,
            "xyz",
            2,
            "bob",
            "demo",
        );
        assert_eq!(t.conference("xyz").unwrap().participants.len(), 2);
        t.user_left(3, &p.server, "xyz", 1, "ann");
        t.user_left(4, &p.server, "xyz", 2, "bob");
        assert!(t.conference("xyz").unwrap().participants.is_empty());
        t.conf_deleted(5, &p.server, "xyz");
        assert!(t.conference("xyz").is_none());
        let kinds: Vec<_> = t.events().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                "registered",
                "registered",
                "created",
                "userjoined",
                "userjoined",
                "userleft",
                "userleft",
                "confdeleted"
            ]
        );
    }

    #[test]
    fn a_stale_link_cannot_remove_its_successor() {
        let t0 = Instant::now();
        let mut t = two_servers(t0);
        let old = t.servers().find(|s| s.id == "a").unwrap().generation;
        let new = t.register(t0, 0, "a", "127.0.0.1:9".parse().unwrap(), caps(true), 50);
        t.server_lost(0, "a", old);
        assert!(t.servers().any(|s| s.id == "a" && s.generation == new));
        t.server_lost(0, "a", new);
        assert!(!t.servers().any(|s| s.id == "a"));
    }

    #[test]
    fn losing_a_server_forgets_its_conferences() {
        let t0 = Instant::now();
        let mut t = two_servers(t0);
        let p = t.place(t0, 0, "xyz", "demo", Mode::Reflect, TTL).unwrap();
        let g = t.servers().find(|s| s.id == p.server).unwrap().generation;
        t.server_lost(0, &p.server, g);
        let again = t.place(t0, 0, "xyz", "demo", Mode::Reflect, TTL).unwrap();
        assert_ne!(again.server, p.server);
        assert!(again.created);
    }
}
