//! The dispatch service: everything the dispatcher decides, behind one type.
//!
//! The adapters only parse and call it: `clients` (the client host over TCP and
//! WebSocket), `registry` (media servers' links) and `http` (API, dashboard, admin). The
//! tables (`crate::core`) are its sans-IO state; the store (`crate::store`) is where
//! several dispatchers meet, and the service's loop ([`sync`]) keeps it in step; operator
//! and server-initiated actions that move people (punt, move, drain, merge) are [`ops`].

pub(crate) mod ops;
mod rate;
mod sync;

pub(crate) use sync::run as store_loop;

use crate::core::{self, Join, Load, Media, PlaceError, Stamp};
use crate::metrics::{Metrics, OutcomeLabel};
use crate::store::{self, Store};
use crate::{unix_ms, usage, Settings};
use control::{Outbox, Transport};
use protocol::ticket::{self, Claims};
use protocol::{
    Capabilities, DispMsg, Endpoint, ErrorCode, JoinOpts, Mode, MsMsg, Role, ServerMsg,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The role a join gets from the PIN it carries: a moderator with the account's moderator
/// PIN, a participant without a PIN; a wrong PIN (or one for an account without moderators)
/// is refused, so a mistyped PIN is noticed rather than silently demoted.
fn role_of(account_pin: Option<&str>, join_pin: Option<&str>) -> Result<Role, ServerMsg> {
    match (join_pin, account_pin) {
        (None, _) => Ok(Role::Participant),
        (Some(given), Some(pin)) if same(given, pin) => Ok(Role::Moderator),
        (Some(_), _) => Err(ServerMsg::reject(
            ErrorCode::Forbidden,
            "wrong moderator PIN for this account",
        )),
    }
}

/// Compares without an early exit, so response time does not leak a PIN's prefix.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The registry link of one media server, by which reservations and dispatches are sent.
pub(crate) struct RegistryLink {
    generation: u64,
    outbox: Outbox,
}

/// The wait a retryable reject names when the cause passes within a row exchange or a
/// registration (a media server registering, a placement another dispatcher made).
const RETRY_SOON: Duration = Duration::from_millis(500);
/// The wait it names when a server must report or come back first (reports come every
/// second).
const RETRY_LATER: Duration = Duration::from_secs(1);

/// Counts a registry link between its accept and its `register`.
pub(crate) struct Registering<'a>(&'a AtomicUsize);

impl Drop for Registering<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// State shared by the dispatcher's connections. The locks are held only for table
/// updates, never across an await.
pub struct Service {
    settings: Settings,
    tables: Mutex<core::Tables>,
    links: Mutex<HashMap<String, RegistryLink>>,
    pub metrics: Metrics,
    /// One JSON line per leave, when `--usage-log` is set.
    usage: Option<usage::UsageLog>,
    /// The store shared with other dispatchers, and what we know of them.
    cluster: store::Cluster,
    /// Registry links accepted whose `register` has not come yet.
    registering: AtomicUsize,
    /// The join rate buckets.
    join_limiter: Mutex<rate::JoinLimiter>,
}

impl Service {
    pub(crate) fn new(
        settings: Settings,
        usage: Option<usage::UsageLog>,
        store: Store,
        metrics: Metrics,
    ) -> Service {
        let policy = core::Policy {
            cost: settings.cost,
            pools: settings.tenancy.server_pools(),
        };
        let join_limiter = Mutex::new(rate::JoinLimiter::new(settings.join_rate));
        Service {
            cluster: store::Cluster::new(store),
            usage,
            tables: Mutex::new(core::Tables::with_policy(policy, rand::random())),
            settings,
            links: Mutex::new(HashMap::new()),
            metrics,
            registering: AtomicUsize::new(0),
            join_limiter,
        }
    }

    /// The tables, for reading (the API, tests).
    pub fn tables(&self) -> MutexGuard<'_, core::Tables> {
        // A panic while holding the lock would be a bug in a table method; keep serving.
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn links(&self) -> MutexGuard<'_, HashMap<String, RegistryLink>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Reopens the usage log (SIGHUP after logrotate moved it away); true if there is one.
    pub fn reopen_usage_log(&self) -> bool {
        match &self.usage {
            Some(log) => {
                log.reopen();
                true
            }
            None => false,
        }
    }

    /// How a join of `account` from `domain` is billed: (customer, tenant pool, contracted
    /// users), as [`Service::join`] resolves them. An account this dispatcher does not know
    /// is its own customer, without a contract.
    fn billing_of(&self, account: &str, domain: Option<&str>) -> (String, String, u32, u32) {
        let s = &self.settings;
        match s.accounts.iter().find(|a| a.code == account) {
            Some(a) => (
                a.customer.clone(),
                s.tenancy.pool_for(a, domain).to_owned(),
                a.reserved,
                a.spread,
            ),
            None => (account.to_owned(), String::new(), 0, 0),
        }
    }

    /// Queues a leave for the usage log, if there is one.
    fn record_usage(&self, stay: core::Usage) {
        if let Some(log) = &self.usage {
            log.record(stay);
        }
    }

    /// Sends a line down a media server's registry link, if that registration is live.
    fn send_to(&self, server: &str, generation: u64, msg: DispMsg) -> bool {
        self.links()
            .get(server)
            .filter(|l| l.generation == generation)
            .is_some_and(|l| l.outbox.send(msg.encode()))
    }

    /// The generation of `server`'s registration in the tables (0 when unknown).
    fn generation_of(&self, server: &str) -> u64 {
        self.tables().server(server).map_or(0, |s| s.generation)
    }

    /// Reserves a place for `user` at the placed server and signs its will-call ticket.
    /// `None` when the server's link is gone.
    fn hand_out(
        &self,
        to: &core::Placement,
        conference: &str,
        account: &str,
        user: &str,
        mode: Mode,
    ) -> Option<String> {
        self.hand_out_as(to, conference, account, user, mode, Role::Participant)
    }

    /// [`Service::hand_out`], with the role the ticket grants.
    fn hand_out_as(
        &self,
        to: &core::Placement,
        conference: &str,
        account: &str,
        user: &str,
        mode: Mode,
        role: Role,
    ) -> Option<String> {
        let expires = unix_ms() / 1000 + self.settings.ticket_ttl.as_secs();
        let reserve = DispMsg::Reserve {
            conference: conference.to_owned(),
            account: account.to_owned(),
            user: user.to_owned(),
            mode,
            expires,
        };
        // A server linked to another dispatcher gets no `reserve`: it creates the
        // conference on the ticketed join.
        let remote = self.is_remote(&to.server);
        if !remote && !self.send_to(&to.server, to.generation, reserve) {
            return None;
        }
        let claims = Claims {
            conference,
            account,
            user,
            server: &to.server,
        };
        Some(ticket::sign_as(
            &self.settings.secret,
            &claims,
            expires,
            role,
        ))
    }

    /// Cascading: tells `to.server`, where `conference` spreads now, to link with `l`'s
    /// server, with a ticket signed for the pair.
    fn link(
        &self,
        to: &crate::core::Placement,
        l: &crate::core::LinkTo,
        conference: &str,
        mode: Mode,
    ) {
        let expires = unix_ms() / 1000 + self.settings.ticket_ttl.as_secs();
        let claims = Claims {
            conference,
            account: protocol::cascade::LINK_ACCOUNT,
            user: &to.server,
            server: &l.peer,
        };
        let line = DispMsg::Link {
            conference: conference.to_owned(),
            mode,
            peer: l.peer.clone(),
            addr: l.addr,
            ticket: ticket::sign(&self.settings.secret, &claims, expires),
        };
        if !self.send_to(&to.server, to.generation, line) {
            tracing::warn!(conference, server = %to.server, peer = %l.peer, "link not sent");
        }
    }

    /// A client's `join`: checks the account, places the conference, reserves at the
    /// media server and signs the ticket. Returns the `dispatch` line (naming the server's
    /// WebSocket URL for a client on a WebSocket), or the `reject` to send instead.
    pub(crate) async fn join(
        &self,
        conference: &str,
        account: &str,
        user: &str,
        opts: &JoinOpts,
        transport: Transport,
    ) -> ServerMsg {
        let settings = &self.settings;
        let mode = opts.mode;
        let Some(acct) = settings.accounts.iter().find(|a| a.code == account) else {
            return ServerMsg::reject(
                ErrorCode::UnknownAccount,
                format!("unknown account {}", protocol::clip(account)),
            );
        };
        let role = match role_of(acct.moderator_pin.as_deref(), opts.pin()) {
            Ok(r) => r,
            Err(reject) => {
                tracing::info!(conference, user, account, "join with a wrong moderator PIN");
                return reject;
            }
        };
        let join = Join {
            conference,
            account,
            customer: &acct.customer,
            mode,
            media: Media::from_kinds(&opts.media),
            pool: Some(settings.tenancy.pool_for(acct, opts.domain.as_deref())),
            reserved: acct.reserved,
            spread: acct.spread,
            max_users: acct.max_users,
        };
        let now = Instant::now();
        // With several dispatchers the store settles where a new conference runs.
        let placed = match self.claim(&join).await {
            Some(server) => self.tables().place_claimed(
                Instant::now(),
                unix_ms(),
                &join,
                &server,
                settings.ticket_ttl,
            ),
            None => self
                .tables()
                .place_join(now, unix_ms(), &join, settings.ticket_ttl),
        };
        self.metrics
            .selection_seconds
            .observe(now.elapsed().as_secs_f64());
        let placement = match placed {
            Ok(p) => p,
            Err(e) => return self.refusal(&join, e),
        };
        let Some(ticket) = self.hand_out_as(&placement, conference, account, user, mode, role)
        else {
            // Its registration changed between the placement and the reservation.
            return ServerMsg::retry(
                RETRY_SOON,
                &format!("media server {} is re-registering", placement.server),
            );
        };
        for l in &placement.links {
            self.link(&placement, l, conference, mode);
        }
        let outcome = if placement.created {
            "created"
        } else {
            "found"
        };
        self.metrics
            .dispatches
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
        tracing::info!(conference, user, server = %placement.server, created = placement.created, role = role.as_str(), "dispatch");
        let addr = Endpoint::for_client(
            transport == Transport::WebSocket,
            placement.client_addr,
            placement.ws_url,
        );
        ServerMsg::Dispatch {
            addr,
            ticket,
            conference: None,
        }
    }

    /// The `reject` for a join that could not be placed: `429` over the customer's
    /// maximum; a retryable `480` when a server that could host it is registering,
    /// restarting or briefly out of communication; `503` when none exists.
    fn refusal(&self, join: &Join, e: PlaceError) -> ServerMsg {
        match e {
            PlaceError::OverLimit { .. } => ServerMsg::reject(ErrorCode::AccountFull, e.to_string()),
            // The store placed it on a server registered at another dispatcher whose row
            // has not reached us yet.
            PlaceError::UnknownServer(server) => ServerMsg::retry(
                RETRY_SOON,
                &format!(
                    "conference {} is starting on media server {}, registered at another dispatcher",
                    protocol::clip(join.conference),
                    server
                ),
            ),
            e => {
                if self.registering.load(Ordering::Relaxed) > 0 {
                    return ServerMsg::retry(RETRY_SOON, "a media server is registering");
                }
                match self.tables().retry_hint(Instant::now(), unix_ms(), join) {
                    Some(why) => ServerMsg::retry(RETRY_LATER, &why),
                    None => ServerMsg::reject(ErrorCode::NoCapacity, e.to_string()),
                }
            }
        }
    }

    /// A registry link was accepted; its `register` is still to come. Joins that find no
    /// server meanwhile are told to retry. The guard counts it until dropped.
    pub(crate) fn registering(&self) -> Registering<'_> {
        self.registering.fetch_add(1, Ordering::Relaxed);
        Registering(&self.registering)
    }

    /// A media server's `register`: it enters the capacity table and its link is kept for
    /// reservations and dispatches. Returns the registration's generation.
    pub(crate) fn register(
        &self,
        id: &str,
        client_addr: SocketAddr,
        caps: Capabilities,
        total: u32,
        ws: Option<String>,
        outbox: Outbox,
    ) -> u64 {
        let generation = {
            let mut t = self.tables();
            let g = t.register(Instant::now(), unix_ms(), id, client_addr, caps, total);
            t.set_ws_url(id, ws);
            g
        };
        self.links()
            .insert(id.to_owned(), RegistryLink { generation, outbox });
        self.cluster.linked(id);
        generation
    }

    /// A line on server `id`'s registry link after its `register`.
    pub(crate) fn server_line(&self, id: &str, msg: MsMsg) {
        self.cluster.observe(id, &msg);
        // Asked by the server itself (high water, drain); handled outside the table lock
        // because the punt takes it itself.
        if let MsMsg::Punt { conference } = &msg {
            ops::server_punt(self, id, conference);
            return;
        }
        let now = Instant::now();
        let unix = unix_ms();
        let mut t = self.tables();
        match msg {
            MsMsg::Register { .. } => tracing::warn!(server = id, "repeated register ignored"),
            MsMsg::Report {
                unused,
                conferences,
                users,
                cpu_pct,
                pps,
                loss_pct,
            } => t.report(
                Stamp { now, unix_ms: unix },
                id,
                Load {
                    unused,
                    conferences,
                    users,
                    cpu_pct,
                    pps,
                    loss_pct,
                },
            ),
            MsMsg::UserJoined {
                conference,
                participant,
                name,
                account,
            } => t.user_joined(
                Stamp { now, unix_ms: unix },
                id,
                &conference,
                participant,
                &name,
                &account,
            ),
            MsMsg::Member(m) => {
                let (customer, tenant, reserved, spread) =
                    self.billing_of(&m.account, m.domain.as_deref());
                let seated = core::Seated {
                    customer: &customer,
                    tenant: &tenant,
                    mode: m.mode,
                    media: Media::from_kinds(&m.media),
                    reserved,
                    spread,
                    joined_unix_ms: m.joined_unix_ms,
                };
                t.user_joined_as(
                    Stamp { now, unix_ms: unix },
                    id,
                    &m.conference,
                    m.participant,
                    &m.name,
                    &m.account,
                    Some(&seated),
                )
            }
            MsMsg::UserLeft {
                conference,
                participant,
                name,
            } => {
                if let Some(stay) = t.user_left(unix, id, &conference, participant, &name) {
                    self.record_usage(stay);
                }
            }
            MsMsg::ConfDeleted { conference } => t.conf_deleted(unix, id, &conference),
            MsMsg::State { draining } => {
                if let Err(e) = t.set_drain(unix, id, draining, id) {
                    tracing::warn!(server = id, error = %e, "state change ignored");
                } else {
                    tracing::info!(server = id, draining, "server changed its own state");
                }
            }
            MsMsg::Recording {
                conference,
                on,
                file,
                seconds,
            } => {
                if let Some(done) = t.recording(unix, id, &conference, on, &file, seconds) {
                    drop(t);
                    if let Some(log) = &self.usage {
                        log.record_recording(&done);
                    }
                }
            }
            MsMsg::Punt { .. } => {}
        }
    }

    /// Server `id`'s registry link of `generation` ended: its conferences are lost (their
    /// clients come back), unless a newer registration replaced it.
    pub(crate) fn server_gone(&self, id: &str, generation: u64) {
        let (lost, stays) = {
            let mut t = self.tables();
            (t.server_lost(unix_ms(), id, generation), t.take_stays())
        };
        for stay in stays {
            self.record_usage(stay);
        }
        self.metrics.failovers.inc_by(lost as u64);
        let mut links = self.links();
        if links.get(id).is_some_and(|l| l.generation == generation) {
            links.remove(id);
            self.cluster.unlinked(id);
        }
    }

    /// The dispatcher's clock (every second): changes of contact and state logged,
    /// reservations expired, empty conferences forgotten.
    pub(crate) fn tick(&self) {
        let now = Instant::now();
        // Links first, then the tables: never both locks at once.
        let linked: Vec<String> = self.links().keys().cloned().collect();
        let mut tables = self.tables();
        tables.tick(now, unix_ms());
        tables.sweep_empty(now, unix_ms(), |server| linked.iter().any(|l| l == server));
    }

    /// Counts a `reject` or `error` sent to a client.
    pub(crate) fn count_refusal(&self, code: ErrorCode) {
        self.metrics.reject(code);
    }
}

#[cfg(test)]
mod role_tests {
    use super::*;

    #[test]
    fn the_pin_decides_the_role() {
        assert_eq!(role_of(None, None), Ok(Role::Participant));
        assert_eq!(role_of(Some("4711"), None), Ok(Role::Participant));
        assert_eq!(role_of(Some("4711"), Some("4711")), Ok(Role::Moderator));
        for (account, given) in [
            (Some("4711"), "4712"),
            (Some("4711"), "47111"),
            (None, "4711"),
        ] {
            let e = role_of(account, Some(given)).unwrap_err();
            assert!(
                matches!(
                    e,
                    ServerMsg::Reject {
                        code: ErrorCode::Forbidden,
                        ..
                    }
                ),
                "{e:?}"
            );
        }
    }
}
