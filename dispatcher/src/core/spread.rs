//! Cascading in the tables: a conference whose server is full spreads to other servers,
//! which the media servers link pairwise ("one giant MCU", seed 001). The conference
//! table keeps its first server as `server` and every other one in `links`, each with its
//! own roster (participant ids are per server). When a server of a spread conference goes
//! (deleted there, or lost), the conference lives on on the others.

use super::select::{choose, Request};
use super::*;

/// A server the newly linked one must connect to, and where it reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkTo {
    pub peer: String,
    pub addr: SocketAddr,
}

impl Conference {
    /// Everyone in the conference, wherever: (server, participant id there, name).
    pub fn everyone(&self) -> impl Iterator<Item = (&str, u32, &str)> + '_ {
        let first = self.server.as_str();
        self.participants
            .iter()
            .map(move |(id, n)| (first, *id, n.as_str()))
            .chain(
                self.links
                    .iter()
                    .flat_map(|(s, r)| r.iter().map(move |(id, n)| (s.as_str(), *id, n.as_str()))),
            )
    }

    /// Every server it runs on, its own first.
    pub fn servers(&self) -> impl Iterator<Item = &str> + '_ {
        std::iter::once(self.server.as_str()).chain(self.links.keys().map(String::as_str))
    }

    /// Its members on `server` (joined there).
    fn members_on(&self, server: &str) -> usize {
        match server == self.server {
            true => self.participants.len(),
            false => self.links.get(server).map_or(0, BTreeMap::len),
        }
    }
}

impl Tables {
    /// An operator sets how many of `conference`'s members each server holds before it
    /// spreads (0: only when full), as an account's `spread` does; members already seated
    /// stay where they are.
    pub fn set_spread(
        &mut self,
        unix_ms: u64,
        conference: &str,
        per_server: u32,
        who: &str,
    ) -> Result<(), PlaceError> {
        let c = self
            .conferences
            .get_mut(conference)
            .ok_or_else(|| PlaceError::UnknownConference(conference.to_owned()))?;
        c.spread = per_server;
        let server = c.server.clone();
        let detail = format!("{per_server} members a server");
        self.log_by(unix_ms, "spread-set", &server, conference, detail, who);
        Ok(())
    }

    /// Where a join of a running conference is seated: its server while that has room for
    /// one more (or the contract holds the place); else the linked server with the most
    /// room that has it; else a new server, chosen as for a new conference among those it
    /// does not run on, which must link with every server it runs on; else its own server,
    /// full or not. `None`: the conference is not in the table, or its server is gone.
    ///
    /// An account's `spread` (members per server) counts as room too: a server holding
    /// that many of the conference's members (joined or on their way) has none for it.
    pub(super) fn seat(
        &mut self,
        now: Instant,
        unix_ms: u64,
        join: &Join,
    ) -> Option<(String, Vec<LinkTo>)> {
        let c = self.conferences.get(join.conference)?;
        let units = i64::from(c.units_per_user);
        let origin = self.servers.get(&c.server)?;
        let below_spread = |s: &Server| {
            c.spread == 0 || {
                let coming = s.pending.iter().filter(|p| p.conference == c.name).count();
                c.members_on(&s.id) + coming < c.spread as usize
            }
        };
        if below_spread(origin)
            && (origin.score() >= units || c.reserved as usize > c.participants.len())
        {
            return Some((c.server.clone(), Vec::new()));
        }
        let roomy = c
            .links
            .keys()
            .filter_map(|id| self.servers.get(id))
            .filter(|s| s.state(now, unix_ms / 1000) == ServerState::InService)
            .filter(|s| s.score() >= units && below_spread(s))
            .max_by_key(|s| s.score());
        if let Some(s) = roomy {
            return Some((s.id.clone(), Vec::new()));
        }
        let hosts: Vec<&str> = std::iter::once(c.server.as_str())
            .chain(c.links.keys().map(String::as_str))
            .collect();
        let mode = c.parsed_mode();
        let req = Request {
            need: needs(mode, Media::parse(c.media)),
            pool: Some(c.tenant.as_str()).filter(|p| !p.is_empty()),
            units: c.units_per_user,
            exclude: None,
        };
        let candidates = self
            .servers
            .values()
            .filter(|s| !hosts.contains(&s.id.as_str()));
        let Some(new) = choose(candidates, &req, now, unix_ms / 1000, &mut self.rng)
            .filter(|s| s.score() >= units)
            .map(|s| s.id.clone())
        else {
            return Some((c.server.clone(), Vec::new()));
        };
        let links: Vec<LinkTo> = hosts
            .iter()
            .filter_map(|id| self.servers.get(*id))
            .map(|s| LinkTo {
                peer: s.id.clone(),
                addr: s.client_addr,
            })
            .collect();
        let why = match origin.score() >= units {
            true => "spread",
            false => "full",
        };
        let detail = format!(
            "{why} at {}; linked with {}",
            c.server,
            links
                .iter()
                .map(|l| l.peer.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        let name = c.name.clone();
        let relay = c.units_per_user;
        if let Some(c) = self.conferences.get_mut(join.conference) {
            c.links.insert(new.clone(), BTreeMap::new());
        }
        // The relay cost, before the servers' reports count it: each link end carries every
        // member's media once more, as one more member would (`Room::units` on the server).
        if let Some(s) = self.servers.get_mut(&new) {
            s.hosted += 1;
            s.unused = s
                .unused
                .saturating_sub(relay.saturating_mul(links.len() as u32));
        }
        for l in &links {
            if let Some(s) = self.servers.get_mut(&l.peer) {
                s.unused = s.unused.saturating_sub(relay);
            }
        }
        self.log(unix_ms, "spread", &new, &name, detail);
        Some((new, links))
    }

    /// A `userjoined` from a server the conference spreads to; false when `server` is not
    /// one of its linked servers.
    pub(super) fn linked_joined(
        &mut self,
        at: Stamp,
        server: &str,
        conference: &str,
        participant: u32,
        name: &str,
    ) -> bool {
        let Some(c) = self.conferences.get_mut(conference) else {
            return false;
        };
        if c.server == server {
            return false;
        }
        let Some(roster) = c.links.get_mut(server) else {
            return false;
        };
        let (units, customer) = (c.units_per_user, c.customer.clone());
        if roster.insert(participant, name.to_owned()).is_none() {
            c.link_joined
                .insert((server.to_owned(), participant), at.unix_ms);
            *self.customers.entry(customer).or_default() += 1;
        }
        if let Some(s) = self.servers.get_mut(server) {
            s.settle_pending(conference);
            s.unused = s.unused.saturating_sub(units);
            s.users += 1;
        }
        self.log(
            at.unix_ms,
            "userjoined",
            server,
            conference,
            format!("{participant} {name}"),
        );
        true
    }

    /// A `userleft` from a server the conference spreads to: `Some` (with the stay, if
    /// the table knew the member) when `server` is one of its linked servers.
    pub(super) fn linked_left(
        &mut self,
        unix_ms: u64,
        server: &str,
        conference: &str,
        participant: u32,
        name: &str,
    ) -> Option<Option<Usage>> {
        let c = self.conferences.get_mut(conference)?;
        if c.server == server {
            return None;
        }
        let roster = c.links.get_mut(server)?;
        let mut usage = None;
        if roster.remove(&participant).is_some() {
            let joined = c
                .link_joined
                .remove(&(server.to_owned(), participant))
                .unwrap_or(unix_ms);
            usage = Some(c.stay(name, server, joined, unix_ms));
            let customer = c.customer.clone();
            uncount(&mut self.customers, &customer, 1);
        }
        let units = c.units_per_user;
        if let Some(s) = self.servers.get_mut(server) {
            s.unused = s.unused.saturating_add(units).min(s.total);
            s.users = s.users.saturating_sub(1);
        }
        self.log(
            unix_ms,
            "userleft",
            server,
            conference,
            format!("{participant} {name}"),
        );
        Some(usage)
    }

    /// A `confdeleted` from a server of a spread conference: the conference stays on the
    /// others (promoted to a linked server if it was the first). False when the
    /// conference does not spread, and is forgotten as usual.
    pub(super) fn unlink(&mut self, server: &str, conference: &str) -> bool {
        let Some(c) = self.conferences.get_mut(conference) else {
            return false;
        };
        let handled = if c.server == server {
            promote(c)
        } else {
            c.links.remove(server).is_some()
        };
        if handled {
            if let Some(s) = self.servers.get_mut(server) {
                s.hosted = s.hosted.saturating_sub(1);
            }
        }
        handled
    }
}

/// Makes the first linked server the conference's server, with its roster; false when
/// the conference does not spread.
pub(super) fn promote(c: &mut Conference) -> bool {
    let Some((server, roster)) = c.links.pop_first() else {
        return false;
    };
    c.joined = roster
        .keys()
        .map(|p| {
            let at = c.link_joined.remove(&(server.clone(), *p)).unwrap_or(0);
            (*p, at)
        })
        .collect();
    c.participants = roster;
    c.server = server;
    true
}
