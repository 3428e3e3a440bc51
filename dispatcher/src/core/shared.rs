//! What several dispatchers sharing a store need of the tables: choosing a server without
//! committing (the store decides, then `commit` records its answer), and merging the
//! capacity rows of servers linked to other dispatchers. Kept apart from the selection
//! rules so those stay one dispatcher's business.

use super::*;

/// A capacity row of a server linked to another dispatcher, as the tables take it.
#[derive(Debug, Clone)]
pub struct RemoteRow {
    pub id: String,
    pub client_addr: SocketAddr,
    pub ws_url: Option<String>,
    pub caps: Capabilities,
    pub total: u32,
    pub load: Load,
    /// How old the server's last report is.
    pub age: Duration,
    pub draining: bool,
    pub maintenance: Option<(u64, u64)>,
}

impl Tables {
    /// [`Tables::place_join`] for a conference the store placed on `server`: the
    /// customer's maximum still applies, then the join is committed there.
    pub fn place_claimed(
        &mut self,
        now: Instant,
        unix_ms: u64,
        join: &Join,
        server: &str,
        ttl: Duration,
    ) -> Result<Placement, PlaceError> {
        self.admit(now, join)?;
        self.commit(now, unix_ms, join, server, ttl)
    }

    /// Whether the conference table has `conference` on a server of the capacity table.
    pub fn placed_on(&self, conference: &str) -> Option<&str> {
        self.conferences
            .get(conference)
            .filter(|c| self.servers.contains_key(&c.server))
            .map(|c| c.server.as_str())
    }

    /// Takes in the row of a server linked to another dispatcher. Returns true when the
    /// server was not in the table before.
    pub fn merge_remote(&mut self, at: Stamp, row: &RemoteRow) -> bool {
        let fresh = match self.servers.get(&row.id) {
            Some(s) => {
                s.client_addr != row.client_addr || s.caps != row.caps || s.total != row.total
            }
            None => true,
        };
        if fresh {
            self.register(
                at.now,
                at.unix_ms,
                &row.id,
                row.client_addr,
                row.caps,
                row.total,
            );
        }
        let reported = at.now.checked_sub(row.age).unwrap_or(at.now);
        let age_ms = row.age.as_millis() as u64;
        let stamp = Stamp {
            now: reported,
            unix_ms: at.unix_ms.saturating_sub(age_ms),
        };
        let unchanged = self
            .servers
            .get(&row.id)
            .is_some_and(|s| !fresh && s.last_report >= reported);
        if !unchanged {
            self.report(stamp, &row.id, row.load);
        }
        if let Some(s) = self.servers.get_mut(&row.id) {
            s.draining = row.draining;
            s.maintenance = row.maintenance;
            s.ws_url.clone_from(&row.ws_url);
        }
        fresh
    }

    /// Drops a remote server whose row is gone from the store, with its conferences.
    pub fn drop_remote(&mut self, unix_ms: u64, id: &str) {
        if let Some(g) = self.servers.get(id).map(|s| s.generation) {
            self.server_lost(unix_ms, id, g);
        }
    }

    /// Forgets adopted conferences on remote servers that the server no longer runs:
    /// `runs(conference, server)` says what the rows say. Entries younger than `grace`
    /// stay (their first client may not have arrived yet).
    pub fn forget_remote_conferences(
        &mut self,
        now: Instant,
        grace: Duration,
        is_remote: impl Fn(&str) -> bool,
        runs: impl Fn(&str, &str) -> bool,
    ) {
        let gone: Vec<(String, String)> = self
            .conferences
            .iter()
            .filter(|(name, c)| {
                is_remote(&c.server)
                    && now.saturating_duration_since(c.created) >= grace
                    && !runs(name, &c.server)
            })
            .map(|(name, c)| (c.server.clone(), name.clone()))
            .collect();
        // Through `forget_conference`, so the server's hosted count and reserve follow.
        for (server, name) in gone {
            self.forget_conference(&server, &name);
        }
    }

    /// Points `conference` at `server` (call resolution moved it there).
    /// Its participants' stays on the old server stay open until that server's
    /// `userleft`s (or its loss), as after a punt; the customer's count and the servers'
    /// hosted counts and reserves follow the conference.
    pub fn move_conference(&mut self, unix_ms: u64, conference: &str, server: &str) {
        let Some(c) = self.conferences.get_mut(conference) else {
            return;
        };
        if c.server == server {
            return;
        }
        let old_reserve = c.reserve_units();
        let from = std::mem::replace(&mut c.server, server.to_owned());
        let participants = std::mem::take(&mut c.participants);
        for (p, name) in &participants {
            let joined = c.joined.remove(p).unwrap_or(unix_ms);
            c.moved.push(Moved {
                server: from.clone(),
                participant: *p,
                joined_unix_ms: joined,
                name: name.clone(),
            });
        }
        c.joined.clear();
        let new_reserve = c.reserve_units();
        let customer = c.customer.clone();
        uncount(&mut self.customers, &customer, participants.len());
        if let Some(old) = self.servers.get_mut(&from) {
            old.reserve_units = old.reserve_units.saturating_sub(old_reserve);
            old.hosted = old.hosted.saturating_sub(1);
        }
        if let Some(s) = self.servers.get_mut(server) {
            s.reserve_units += new_reserve;
            s.hosted += 1;
        }
        self.log(unix_ms, "merge", &from, conference, format!("to {server}"));
    }
}
