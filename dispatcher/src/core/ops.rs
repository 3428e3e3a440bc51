//! Operator actions and the dispatcher's clock on the tables: drain, maintenance
//! windows, punts, and logging changes of contact and state.

use super::*;

/// An empty conference younger than this is left alone: its first join is on the way.
pub const EMPTY_GRACE: Duration = Duration::from_secs(5);
/// How long a server lost while in service counts as restarting: a join that finds no
/// server meanwhile is told to retry. After it, the server no longer exists.
pub const COMEBACK: Duration = Duration::from_secs(10);

impl Tables {
    /// The dispatcher's clock: logs losses and returns of contact (no report for
    /// [`REPORT_FRESH`]) and state changes such as a maintenance window opening. Called
    /// every second; the state it reads lives in the tables, not in the task.
    pub fn tick(&mut self, now: Instant, unix_ms: u64) {
        let mut changes = Vec::new();
        for s in self.servers.values_mut() {
            let silent = !s.in_communication(now);
            if silent != s.silent {
                s.silent = silent;
                let kind = if silent { "silent" } else { "contact" };
                let age = now.saturating_duration_since(s.last_report).as_millis();
                changes.push((kind, s.id.clone(), format!("last report {age} ms ago")));
            }
            let state = s.state(now, unix_ms / 1000);
            if state != s.seen {
                changes.push((
                    "state",
                    s.id.clone(),
                    format!("{} -> {}", s.seen.as_str(), state.as_str()),
                ));
                s.seen = state;
            }
        }
        for (kind, id, detail) in changes {
            self.log(unix_ms, kind, &id, "", detail);
        }
    }

    /// Empty-conference cleanup, on the dispatcher's clock: a conference on a server
    /// linked here (`linked`) that nobody is in, and nobody is on the way to (its
    /// reservations have expired), is gone from its server as well; its `confdeleted` was
    /// lost, say with a link that flapped. Forgetting it lets the next join place it
    /// afresh instead of sending clients to a room that no longer exists. Conferences on
    /// servers linked to other dispatchers are the store's to forget.
    pub fn sweep_empty(&mut self, now: Instant, unix_ms: u64, linked: impl Fn(&str) -> bool) {
        for s in self.servers.values_mut() {
            s.expire(now);
        }
        let servers = &self.servers;
        let empty: Vec<(String, String)> = self
            .conferences
            .values()
            .filter(|c| c.participants.is_empty() && c.links.is_empty() && linked(&c.server))
            .filter(|c| now.saturating_duration_since(c.created) >= EMPTY_GRACE)
            .filter(|c| {
                !servers
                    .get(&c.server)
                    .is_some_and(|s| s.pending.iter().any(|p| p.conference == c.name))
            })
            .map(|c| (c.server.clone(), c.name.clone()))
            .collect();
        for (server, name) in empty {
            self.forget_conference(&server, &name);
            self.log(
                unix_ms,
                "expired",
                &server,
                &name,
                "empty, nobody on the way".into(),
            );
        }
    }

    /// Why a join that selection could not place may succeed soon, if it may: a server
    /// that could host it is in service but briefly out of communication (no report for
    /// [`REPORT_FRESH`]), or was lost while in service less than [`COMEBACK`] ago and may
    /// be restarting. `None`: no server exists that could, and `503` is the answer.
    pub fn retry_hint(&mut self, now: Instant, unix_ms: u64, join: &Join) -> Option<String> {
        let need = needs(join.mode, join.media);
        let in_pool = |pool: &str| join.pool.is_none_or(|p| p == pool);
        let unix_s = unix_ms / 1000;
        let silent = self.servers.values().find(|s| {
            s.state(now, unix_s) == ServerState::InService
                && !s.in_communication(now)
                && s.caps.covers(&need)
                && in_pool(&s.pool)
        });
        if let Some(s) = silent {
            let age = now.saturating_duration_since(s.last_report).as_millis();
            return Some(format!(
                "media server {} is briefly out of communication (last report {age} ms ago)",
                s.id
            ));
        }
        let window = COMEBACK.as_millis() as u64;
        self.lost
            .retain(|_, l| unix_ms.saturating_sub(l.unix_ms) < window);
        self.lost
            .iter()
            .find(|(_, l)| l.caps.covers(&need) && in_pool(&l.pool))
            .map(|(id, l)| {
                let ago = unix_ms.saturating_sub(l.unix_ms);
                format!("media server {id} was lost {ago} ms ago and may be restarting")
            })
    }

    /// Operator drain: the server keeps its conferences but gets no new ones.
    pub fn set_drain(
        &mut self,
        unix_ms: u64,
        id: &str,
        on: bool,
        who: &str,
    ) -> Result<(), PlaceError> {
        let s = self
            .servers
            .get_mut(id)
            .ok_or_else(|| PlaceError::UnknownServer(id.to_owned()))?;
        s.draining = on;
        let kind = if on { "drain" } else { "undrain" };
        self.log_by(unix_ms, kind, id, "", String::new(), who);
        Ok(())
    }

    /// Sets or clears a maintenance window, `[start, end)` in Unix seconds.
    pub fn set_maintenance(
        &mut self,
        unix_ms: u64,
        id: &str,
        window: Option<(u64, u64)>,
        who: &str,
    ) -> Result<(), PlaceError> {
        let s = self
            .servers
            .get_mut(id)
            .ok_or_else(|| PlaceError::UnknownServer(id.to_owned()))?;
        s.maintenance = window;
        let detail = window
            .map(|(a, b)| format!("{a}..{b}"))
            .unwrap_or_else(|| "cleared".into());
        self.log_by(unix_ms, "maintenance", id, "", detail, who);
        Ok(())
    }

    /// Moves a conference to the best other server (seed 003's punt): the conference
    /// table points there at once so new joins follow, and a reservation is made for
    /// each participant, who must then be dispatched.
    pub fn punt(
        &mut self,
        now: Instant,
        unix_ms: u64,
        conference: &str,
        ttl: Duration,
        who: &str,
    ) -> Result<Punt, PlaceError> {
        for s in self.servers.values_mut() {
            s.expire(now);
        }
        let c = self
            .conferences
            .get(conference)
            .ok_or_else(|| PlaceError::UnknownConference(conference.to_owned()))?;
        let mode = c.parsed_mode();
        let from = c.server.clone();
        let req = Request {
            need: needs(mode, Media::parse(c.media)),
            pool: Some(c.tenant.as_str()).filter(|p| !p.is_empty()),
            units: c.units_per_user,
            exclude: Some(&from),
        };
        let target = choose(
            self.servers.values(),
            &req,
            now,
            unix_ms / 1000,
            &mut self.rng,
        )
        .ok_or(PlaceError::NoServer(mode.as_str()))?;
        // A conference that spreads stays where it is linked; and one that would fill its
        // target (less than twice its size free there) is better spread than moved, so a
        // server past its high-water mark keeps it (newcomers go elsewhere once it is full),
        // unless the server is draining and everything must go.
        let size = c
            .units_per_user
            .saturating_mul(c.participants.len().max(1) as u32);
        let draining = self.servers.get(&from).is_some_and(|s| s.draining);
        if !c.links.is_empty() || (!draining && target.score() < 2 * i64::from(size)) {
            return Err(PlaceError::Spreads(conference.to_owned()));
        }
        let target = target.id.clone();
        // Looked up above, and nothing removed it since.
        let c = self
            .conferences
            .get_mut(conference)
            .expect("conference looked up above");
        // The participants leave the old server and rejoin the new one: its reserve and
        // the customer's count follow them there.
        let old_reserve = c.reserve_units();
        let participants: Vec<(u32, String)> =
            std::mem::take(&mut c.participants).into_iter().collect();
        // Their stays on the old server end with its `userleft`s, still to come.
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
        c.server = target.clone();
        let account = c.account.clone();
        let customer = c.customer.clone();
        let (per_user, reserved) = (c.units_per_user, c.reserved);
        let new_reserve = c.reserve_units();
        uncount(&mut self.customers, &customer, participants.len());
        if let Some(old) = self.servers.get_mut(&from) {
            old.reserve_units = old.reserve_units.saturating_sub(old_reserve);
            old.hosted = old.hosted.saturating_sub(1);
        }
        let s = self
            .servers
            .get_mut(&target)
            .expect("choose returned a server of this table");
        s.reserve_units += new_reserve;
        s.hosted += 1;
        for i in 0..participants.len() {
            // Below the contracted reserve the place is already held.
            let units = if (i as u64) < u64::from(reserved) {
                0
            } else {
                per_user
            };
            s.push_pending(Pending {
                expires: now + ttl,
                units,
                conference: conference.to_owned(),
                customer: customer.clone(),
            });
        }
        let to = Placement {
            server: target.clone(),
            client_addr: s.client_addr,
            ws_url: s.ws_url.clone(),
            generation: s.generation,
            created: true,
            links: Vec::new(),
        };
        self.log_by(
            unix_ms,
            "punt",
            &from,
            conference,
            format!("to {target}"),
            who,
        );
        Ok(Punt {
            mode,
            from,
            to,
            account,
            participants,
        })
    }

    /// A participant's user name, with its conference's server and account.
    pub fn participant(&self, conference: &str, participant: u32) -> Result<Seat, PlaceError> {
        self.participant_at(conference, participant, None)
    }

    /// A participant of a conference by its id on `server` (ids are per media server, so
    /// a conference spread over several may hold the same id twice); `None`: its first
    /// server's, else the first linked server that has it.
    pub fn participant_at(
        &self,
        conference: &str,
        participant: u32,
        server: Option<&str>,
    ) -> Result<Seat, PlaceError> {
        let c = self
            .conferences
            .get(conference)
            .ok_or_else(|| PlaceError::UnknownConference(conference.to_owned()))?;
        let found = c
            .everyone()
            .filter(|&(s, _, _)| server.is_none_or(|want| want == s))
            .find(|&(_, id, _)| id == participant);
        let (at, name) = found
            .map(|(s, _, n)| (s.to_owned(), n.to_owned()))
            .ok_or_else(|| PlaceError::UnknownParticipant(conference.to_owned(), participant))?;
        Ok(Seat {
            name,
            server: at,
            account: c.account.clone(),
            mode: c.parsed_mode(),
        })
    }

    pub fn server(&self, id: &str) -> Option<&Server> {
        self.servers.get(id)
    }
}
