//! Joins and leaves on the tables: placing a conference (selection, then the
//! reservation and its ramp-up charge), the customer's maximum, the contracted reserve,
//! and the bookkeeping between reports, all in the cost model's capacity units.

use super::*;

/// A join as the dispatcher sees it once the account is checked.
#[derive(Debug, Clone, Copy)]
pub struct Join<'a> {
    pub conference: &'a str,
    pub account: &'a str,
    /// The account's customer; the maximum counts users across its conferences.
    pub customer: &'a str,
    pub mode: Mode,
    pub media: Media,
    /// The tenant pool a new conference must run in; `None`: any server.
    pub pool: Option<&'a str>,
    /// Contracted users per conference (0: none).
    pub reserved: u32,
    /// Members per media server before it spreads (0: only when a server is full).
    pub spread: u32,
    /// The customer's maximum simultaneous users, if its contract has one.
    pub max_users: Option<u32>,
}

impl<'a> Join<'a> {
    /// An audio join without a contract or a pool; the account is its own customer.
    pub fn new(conference: &'a str, account: &'a str, mode: Mode) -> Self {
        Join {
            conference,
            account,
            customer: account,
            mode,
            media: Media::Audio,
            pool: None,
            reserved: 0,
            spread: 0,
            max_users: None,
        }
    }
}

/// One participant's stay, for the usage log, produced by a `userleft`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub account: String,
    pub customer: String,
    pub tenant: String,
    pub conference: String,
    pub user: String,
    pub server: String,
    pub joined_unix_ms: u64,
    pub left_unix_ms: u64,
    pub media: &'static str,
    /// `reflect` or `mix`.
    pub mode: &'static str,
}

/// What a `userjoined` with options (`protocol::Member`) says of a member, resolved
/// against the accounts: how a conference the tables do not know yet (a roster replayed
/// after a dispatcher failover) is billed, exactly as the join that created it was, and
/// when the member joined.
#[derive(Debug, Clone, Copy)]
pub struct Seated<'a> {
    pub customer: &'a str,
    /// The tenant pool, from the account and the member's domain.
    pub tenant: &'a str,
    pub mode: Mode,
    pub media: Media,
    /// The account's contracted users per conference.
    pub reserved: u32,
    /// The account's members per server (see [`Join::spread`]).
    pub spread: u32,
    /// When the media server accepted the member, Unix ms; 0: unknown (now).
    pub joined_unix_ms: u64,
}

impl Tables {
    /// Finds or creates the conference for a join (seed 003, Fig. 2 steps 206-208), as
    /// an audio join without a contract (operator moves).
    pub fn place(
        &mut self,
        now: Instant,
        unix_ms: u64,
        conference: &str,
        account: &str,
        mode: Mode,
        reservation_ttl: Duration,
    ) -> Result<Placement, PlaceError> {
        self.place_join(
            now,
            unix_ms,
            &Join::new(conference, account, mode),
            reservation_ttl,
        )
    }

    /// Expires reservations past their tickets, then checks the customer's maximum
    /// (joined users and clients on their way).
    pub(crate) fn admit(&mut self, now: Instant, join: &Join) -> Result<(), PlaceError> {
        for s in self.servers.values_mut() {
            s.expire(now);
        }
        if let Some(max) = join.max_users {
            if self.customer_users(join.customer, now) >= max {
                return Err(PlaceError::OverLimit {
                    customer: join.customer.to_owned(),
                    max,
                });
            }
        }
        Ok(())
    }

    /// Finds or creates the conference for `join` and reserves a place there: the
    /// customer's maximum, then the conference table, then selection.
    pub fn place_join(
        &mut self,
        now: Instant,
        unix_ms: u64,
        join: &Join,
        ttl: Duration,
    ) -> Result<Placement, PlaceError> {
        self.admit(now, join)?;
        if let Some(p) = self.reserve_existing(now, unix_ms, join, ttl) {
            return Ok(p);
        }
        let id = self.choose(now, unix_ms, join)?;
        self.commit(now, unix_ms, join, &id, ttl)
    }

    /// Runs selection for a new conference of `join` without changing the tables (the
    /// shared store decides whether this choice or another dispatcher's wins).
    pub fn choose(
        &mut self,
        now: Instant,
        unix_ms: u64,
        join: &Join,
    ) -> Result<String, PlaceError> {
        let req = Request {
            need: needs(join.mode, join.media),
            pool: join.pool,
            units: self.first_charge(join),
            exclude: None,
        };
        choose(
            self.servers.values(),
            &req,
            now,
            unix_ms / 1000,
            &mut self.rng,
        )
        .map(|s| s.id.clone())
        .ok_or(PlaceError::NoServer(join.mode.as_str()))
    }

    /// Creates `join`'s conference on `server` (chosen here or by another dispatcher)
    /// and reserves the joining user's place; a conference already running is joined
    /// where it runs instead.
    pub fn commit(
        &mut self,
        now: Instant,
        unix_ms: u64,
        join: &Join,
        server: &str,
        ttl: Duration,
    ) -> Result<Placement, PlaceError> {
        if let Some(p) = self.reserve_existing(now, unix_ms, join, ttl) {
            return Ok(p);
        }
        let units_per_user = self
            .policy
            .cost
            .per_participant(join.mode, join.media.video());
        let first = self.first_charge(join);
        let s = self
            .servers
            .get_mut(server)
            .ok_or_else(|| PlaceError::UnknownServer(server.to_owned()))?;
        s.reserve_units += units_per_user.saturating_mul(join.reserved);
        s.hosted += 1;
        s.push_pending(Pending {
            expires: now + ttl,
            units: first,
            conference: join.conference.to_owned(),
            customer: join.customer.to_owned(),
        });
        let placement = Placement {
            server: s.id.clone(),
            client_addr: s.client_addr,
            ws_url: s.ws_url.clone(),
            generation: s.generation,
            created: true,
            links: Vec::new(),
        };
        self.conferences.insert(
            join.conference.to_owned(),
            Conference {
                name: join.conference.to_owned(),
                server: server.to_owned(),
                mode: join.mode.as_str(),
                media: join.media.as_str(),
                account: join.account.to_owned(),
                customer: join.customer.to_owned(),
                tenant: join.pool.unwrap_or_default().to_owned(),
                units_per_user,
                reserved: join.reserved,
                spread: join.spread,
                joined: HashMap::new(),
                moved: Vec::new(),
                created: now,
                created_unix: unix_ms / 1000,
                participants: BTreeMap::new(),
                links: BTreeMap::new(),
                link_joined: HashMap::new(),
            },
        );
        let detail = format!(
            "mode={} media={} reserved={}",
            join.mode,
            join.media.as_str(),
            join.reserved
        );
        self.log(unix_ms, "created", server, join.conference, detail);
        Ok(placement)
    }

    /// A join of a conference that runs on a live server: reserve there, or where it
    /// spreads when its server is full (`spread::seat`).
    fn reserve_existing(
        &mut self,
        now: Instant,
        unix_ms: u64,
        join: &Join,
        ttl: Duration,
    ) -> Option<Placement> {
        let (server, links) = self.seat(now, unix_ms, join)?;
        let c = self.conferences.get(join.conference)?;
        let s = self.servers.get_mut(&server)?;
        // Below the contracted reserve the place is already held. Only contracted
        // conferences need the scan of the reservations on their way.
        let below_reserve = c.reserved > 0 && {
            let coming = s
                .pending
                .iter()
                .filter(|p| p.conference == join.conference)
                .count();
            ((c.participants.len() + coming) as u64) < u64::from(c.reserved)
        };
        let units = if below_reserve { 0 } else { c.units_per_user };
        s.push_pending(Pending {
            expires: now + ttl,
            units,
            conference: join.conference.to_owned(),
            customer: c.customer.clone(),
        });
        Some(Placement {
            server: s.id.clone(),
            client_addr: s.client_addr,
            ws_url: s.ws_url.clone(),
            generation: s.generation,
            created: false,
            links,
        })
    }

    /// The ramp-up charge of a new conference's first join: its contracted reserve
    /// covers it, else one participant's units.
    fn first_charge(&self, join: &Join) -> u32 {
        if join.reserved > 0 {
            0
        } else {
            self.policy
                .cost
                .per_participant(join.mode, join.media.video())
        }
    }

    /// A customer's users: joined, and dispatched but not yet joined.
    pub fn customer_users(&self, customer: &str, now: Instant) -> u32 {
        let joined = self.customers.get(customer).copied().unwrap_or(0);
        let coming = self
            .servers
            .values()
            .flat_map(|s| s.pending.iter())
            .filter(|p| p.customer == customer && p.expires > now)
            .count();
        joined.saturating_add(u32::try_from(coming).unwrap_or(u32::MAX))
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
        self.user_joined_as(at, server, conference, participant, name, account, None);
    }

    /// A `userjoined`, with what the member's line says of its billing when it has
    /// options (`seated`). A conference the table does not have yet is created from it
    /// (a roster replayed after a failover or a reconnect): from `seated`, as the join
    /// that created it was billed; without it, as a plain reflect audio conference of the
    /// member's account. The stay starts when the media server accepted the member.
    #[allow(clippy::too_many_arguments)]
    pub fn user_joined_as(
        &mut self,
        at: Stamp,
        server: &str,
        conference: &str,
        participant: u32,
        name: &str,
        account: &str,
        seated: Option<&Seated>,
    ) {
        if self.linked_joined(at, server, conference, participant, name) {
            return;
        }
        let (mode, media) = seated.map_or((Mode::Reflect, Media::Audio), |b| (b.mode, b.media));
        let units_per_user = self.policy.cost.per_participant(mode, media.video());
        let created = !self.conferences.contains_key(conference);
        if created {
            if let Some(s) = self.servers.get_mut(server) {
                s.hosted += 1;
            }
        }
        let c = self
            .conferences
            .entry(conference.to_owned())
            .or_insert_with(|| Conference {
                name: conference.to_owned(),
                server: server.to_owned(),
                mode: mode.as_str(),
                media: media.as_str(),
                account: account.to_owned(),
                customer: seated.map_or(account, |b| b.customer).to_owned(),
                tenant: seated.map_or("", |b| b.tenant).to_owned(),
                units_per_user,
                reserved: seated.map_or(0, |b| b.reserved),
                spread: seated.map_or(0, |b| b.spread),
                joined: HashMap::new(),
                moved: Vec::new(),
                created: at.now,
                created_unix: at.unix_ms / 1000,
                participants: BTreeMap::new(),
                links: BTreeMap::new(),
                link_joined: HashMap::new(),
            });
        // A conference created here holds its contracted reserve, as `commit` does.
        let initial_reserve = if created { c.reserve_units() } else { 0 };
        let reserve_before = c.reserve_units();
        let new = c
            .participants
            .insert(participant, name.to_owned())
            .is_none();
        // The server's accept time when the line says it (never in our future); a repeated
        // bare line (a reconnect's replay) keeps the time first seen.
        let said = seated
            .map(|b| b.joined_unix_ms)
            .filter(|&ms| ms > 0)
            .map(|ms| ms.min(at.unix_ms));
        match (said, c.joined.get(&participant)) {
            (Some(ms), _) => {
                c.joined.insert(participant, ms);
            }
            (None, Some(_)) if !new => {}
            (None, _) => {
                c.joined.insert(participant, at.unix_ms);
            }
        }
        let reserve_after = c.reserve_units();
        let units = c.units_per_user;
        let hosts = c.server == server;
        if new {
            *self.customers.entry(c.customer.clone()).or_default() += 1;
        }
        if let Some(s) = self.servers.get_mut(server) {
            s.settle_pending(conference);
            s.unused = s.unused.saturating_sub(units);
            s.users += 1;
            if hosts {
                s.reserve_units = (s.reserve_units + initial_reserve + reserve_after)
                    .saturating_sub(reserve_before);
            }
        }
        let unix_ms = at.unix_ms;
        self.log(
            unix_ms,
            "userjoined",
            server,
            conference,
            format!("{participant} {name}"),
        );
    }

    /// A participant left. Returns its stay for the usage log when the conference
    /// table knew it on this server.
    pub fn user_left(
        &mut self,
        unix_ms: u64,
        server: &str,
        conference: &str,
        participant: u32,
        name: &str,
    ) -> Option<Usage> {
        // What the server charged for this member: the conference's price, wherever the
        // conference table now places it (a punted conference's old server still frees it).
        // After a punt the entry belongs to the new server; the old one's leaves are not
        // its roster's.
        let units = self.conferences.get(conference).map_or_else(
            || self.policy.cost.per_participant(Mode::Reflect, false),
            |c| c.units_per_user,
        );
        if let Some(stay) = self.linked_left(unix_ms, server, conference, participant, name) {
            return stay;
        }
        let mut usage = None;
        let mut reserve_delta = (0, 0);
        if let Some(c) = self.conferences.get_mut(conference) {
            if c.server == server {
                let before = c.reserve_units();
                if c.participants.remove(&participant).is_some() {
                    uncount(&mut self.customers, &c.customer, 1);
                    let joined = c.joined.remove(&participant).unwrap_or(unix_ms);
                    usage = Some(c.stay(name, server, joined, unix_ms));
                }
                reserve_delta = (before, c.reserve_units());
            } else if let Some(i) = c
                .moved
                .iter()
                .position(|m| m.server == server && m.participant == participant)
            {
                // The old server of a punted conference: the entry is the new server's
                // now, but this stay ends here.
                let m = c.moved.swap_remove(i);
                usage = Some(c.stay(name, server, m.joined_unix_ms, unix_ms));
            }
        }
        if let Some(s) = self.servers.get_mut(server) {
            s.unused = s.unused.saturating_add(units).min(s.total);
            s.users = s.users.saturating_sub(1);
            s.reserve_units = (s.reserve_units + reserve_delta.1).saturating_sub(reserve_delta.0);
        }
        self.log(
            unix_ms,
            "userleft",
            server,
            conference,
            format!("{participant} {name}"),
        );
        usage
    }

    /// Stays that ended without a `userleft` since the last call (their server was
    /// lost), for the usage log.
    pub fn take_stays(&mut self) -> Vec<Usage> {
        std::mem::take(&mut self.stays)
    }

    pub fn conf_deleted(&mut self, unix_ms: u64, server: &str, conference: &str) {
        if self.unlink(server, conference) {
            self.log(unix_ms, "unlinked", server, conference, String::new());
            return;
        }
        self.forget_conference(server, conference);
        self.log(unix_ms, "confdeleted", server, conference, String::new());
    }

    /// Removes `conference` if it runs on `server`, releasing what it held there.
    pub(crate) fn forget_conference(&mut self, server: &str, conference: &str) {
        if self
            .conferences
            .get(conference)
            .is_some_and(|c| c.server == server)
        {
            if let Some(c) = self.conferences.remove(conference) {
                uncount(&mut self.customers, &c.customer, c.participants.len());
                if let Some(s) = self.servers.get_mut(server) {
                    s.reserve_units = s.reserve_units.saturating_sub(c.reserve_units());
                    s.hosted = s.hosted.saturating_sub(1);
                }
            }
        }
    }
}
