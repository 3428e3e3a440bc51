//! The service's side of the store: the claim on a join, and the loop that publishes the
//! rows of the servers linked here, merges everyone else's, keeps placements alive, holds
//! or waits for the lease, and (when active) runs call resolution and housekeeping. The
//! store itself (`crate::store`) knows nothing of the service.

use super::Service;
use crate::core::{Join, RemoteRow, Stamp};
use crate::store::lease::{Change, Lease};
use crate::store::resolve::Resolver;
use crate::store::{Row, RowKind, Store, LEASE_TTL};
use crate::unix_ms;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often rows are exchanged with the store; well under [`crate::store::ROW_TTL`] and
/// the 3 s freshness rule, so a remote server never looks silent because of us.
const SYNC_EVERY: Duration = Duration::from_millis(250);
/// How often placements are refreshed and call resolution runs.
const SLOW_EVERY: Duration = Duration::from_secs(1);
/// A conference placed on a remote server is forgotten when that server's row has not
/// listed it for this long (its first client may still be on the way).
const ADOPT_GRACE: Duration = Duration::from_secs(5);
/// How long a join waits, once, for the row of a server another dispatcher placed its
/// conference on: one row exchange ([`SYNC_EVERY`]) and a little.
const ROW_WAIT: Duration = Duration::from_millis(300);

impl Service {
    /// Whether this dispatcher holds the lease (the active one of several).
    pub fn active(&self) -> bool {
        self.cluster.active()
    }

    /// Whether `server` is in the capacity table through another dispatcher's row (for
    /// marking remote rows in the API).
    pub fn is_remote(&self, server: &str) -> bool {
        !self.links().contains_key(server) && self.cluster.is_remote(server)
    }

    /// Settles where a conference this dispatcher does not know runs: selection proposes,
    /// the store decides. `Some(server)` when the store named a server (commit the join
    /// there; one still missing from the capacity table after [`ROW_WAIT`] is alive at
    /// another dispatcher, and the failed commit answers the client a retryable 480);
    /// `None` to place from the local tables alone (the conference is known here,
    /// nothing can host it, or the store is unreachable).
    pub(crate) async fn claim(&self, join: &Join<'_>) -> Option<String> {
        let proposal = {
            let mut t = self.tables();
            if t.placed_on(join.conference).is_some() {
                return None;
            }
            t.choose(Instant::now(), unix_ms(), join).ok()?
        };
        let store = &self.cluster.store;
        let known = |id: &str| self.tables().server(id).is_some();
        let mut waited = false;
        let winner = loop {
            let w = match store.claim(join.conference, &proposal).await {
                Ok(w) => w,
                Err(e) => return self.store_failed(e),
            };
            if known(&w) {
                break w;
            }
            // The placement names a server we do not have. Gone (its row expired): take
            // over. Alive (another dispatcher's server whose row we have not merged
            // yet): the store refuses the replace.
            let w = match store.replace(join.conference, &w, &proposal).await {
                Ok(w) => w,
                Err(e) => return self.store_failed(e),
            };
            if known(&w) {
                break w;
            }
            if waited {
                // Placing it here would start a duplicate. Committing on a server the
                // tables lack fails, so the client gets a retryable `reject 480`.
                tracing::warn!(conference = join.conference, server = %w, "conference starting on another dispatcher's server; retry");
                return Some(w);
            }
            // Its row reaches our tables on the next exchange: wait for it once.
            waited = true;
            tokio::time::sleep(ROW_WAIT).await;
        };
        if winner != proposal {
            tracing::debug!(conference = join.conference, %winner, %proposal, "another dispatcher placed it first");
        }
        Some(winner)
    }

    pub(super) fn store_failed<T>(&self, e: crate::DispatcherError) -> Option<T> {
        tracing::warn!(error = %e, "store unreachable; placing from the local tables");
        None
    }
}

/// The rows of the servers linked here, from the tables and (for `RowKind::Roster`) the
/// rosters.
fn own_rows(service: &Service, linked: &[String], kind: RowKind) -> Vec<Row> {
    let t = service.tables();
    let unix = unix_ms();
    let now = Instant::now();
    linked
        .iter()
        .filter_map(|id| t.server(id))
        .map(|s| Row {
            id: s.id.clone(),
            client_addr: s.client_addr,
            ws_url: s.ws_url.clone(),
            caps: s.caps.to_string(),
            total: s.total,
            unused: s.unused,
            conferences: s.conferences,
            users: s.users,
            cpu_pct: s.cpu_pct,
            pps: s.pps,
            loss_pct: s.loss_pct,
            reported_unix_ms: unix
                .saturating_sub(now.saturating_duration_since(s.last_report).as_millis() as u64),
            draining: s.draining,
            maintenance: s.maintenance,
            dispatcher: service.settings().id.clone(),
            roster: if kind == RowKind::Roster {
                service.cluster.roster_counts(&s.id)
            } else {
                Default::default()
            },
        })
        .collect()
}

/// Takes the other dispatchers' rows into the tables and drops rows that vanished.
fn merge_rows(service: &Service, linked: &HashSet<String>, rows: &[Row]) {
    let now = Instant::now();
    let unix = unix_ms();
    let at = Stamp { now, unix_ms: unix };
    let remote = service.cluster.remote_servers();
    let mut t = service.tables();
    let mut seen = HashSet::new();
    for r in rows.iter().filter(|r| !linked.contains(&r.id)) {
        let age = Duration::from_millis(unix.saturating_sub(r.reported_unix_ms));
        let row = RemoteRow {
            id: r.id.clone(),
            client_addr: r.client_addr,
            ws_url: r.ws_url.clone(),
            caps: r.capabilities(),
            total: r.total,
            load: crate::core::Load {
                unused: r.unused,
                conferences: r.conferences,
                users: r.users,
                cpu_pct: r.cpu_pct,
                pps: r.pps,
                loss_pct: r.loss_pct,
            },
            age,
            draining: r.draining,
            maintenance: r.maintenance,
        };
        if t.merge_remote(at, &row) {
            tracing::info!(server = %r.id, dispatcher = %r.dispatcher, "remote server merged into the capacity table");
        }
        seen.insert(r.id.clone());
    }
    for id in remote
        .iter()
        .filter(|id| !seen.contains(*id) && !linked.contains(*id))
    {
        tracing::info!(server = %id, "remote server's row expired");
        t.drop_remote(unix, id);
    }
    drop(t);
    service.cluster.set_remote(seen);
}

/// Forgets conferences adopted on remote servers that their rosters no longer list.
fn forget_adopted(service: &Service, rosters: &[Row]) {
    let remote = service.cluster.remote_servers();
    if remote.is_empty() {
        return;
    }
    let runs: HashSet<(&str, &str)> = rosters
        .iter()
        .flat_map(|r| r.roster.keys().map(move |c| (c.as_str(), r.id.as_str())))
        .collect();
    service.tables().forget_remote_conferences(
        Instant::now(),
        ADOPT_GRACE,
        |s| remote.contains(s),
        |c, s| runs.contains(&(c, s)),
    );
}

/// Publishes the rows of the servers linked here and merges everyone else's; returns
/// all rows (for call resolution), or `None` when the store could not be reached.
async fn exchange_rows(service: &Service, linked: &[String]) {
    let store = &service.cluster.store;
    let own = own_rows(service, linked, RowKind::Capacity);
    let gone = service.cluster.take_gone();
    let exchanged = async {
        store.put_rows(RowKind::Capacity, &own, &gone).await?;
        store.rows(RowKind::Capacity).await
    };
    match exchanged.await {
        Ok(rows) => merge_rows(service, &linked.iter().cloned().collect(), &rows),
        Err(e) => {
            service.store_failed::<()>(e);
        }
    }
}

/// Publishes the rosters of the servers linked here; reads everyone's when someone
/// needs them (the active dispatcher's sweep, or adopted remote conferences to check).
async fn exchange_rosters(service: &Service, linked: &[String], active: bool) -> Vec<Row> {
    let store = &service.cluster.store;
    let own = own_rows(service, linked, RowKind::Roster);
    if let Err(e) = store.put_rows(RowKind::Roster, &own, &[]).await {
        service.store_failed::<()>(e);
    }
    if !active && service.cluster.remote_servers().is_empty() {
        return Vec::new();
    }
    match store.rows(RowKind::Roster).await {
        Ok(rosters) => {
            forget_adopted(service, &rosters);
            rosters
        }
        Err(e) => service.store_failed(e).unwrap_or_default(),
    }
}

/// Releases the placements of deleted conferences and refreshes those still running on
/// the servers linked here.
async fn keep_placements(service: &Service, linked: &[String], refresh: bool) {
    // Alone on a memory store the local table is the authority for running conferences;
    // placements only matter to dispatchers that do not know them.
    let store = &service.cluster.store;
    if let Err(e) = service.cluster.flush_placements().await {
        service.store_failed::<()>(e);
    }
    if !refresh || !store.shared() {
        return;
    }
    let placed = service.cluster.running_on(linked);
    if let Err(e) = store.keep(&placed).await {
        service.store_failed::<()>(e);
    }
}

/// Takes or renews the lease when due; returns whether we are active.
async fn hold_lease(service: &Service, lease: &mut Lease) -> bool {
    let me = &service.settings().id;
    let sent = Instant::now();
    if lease.due(sent) {
        let granted = service.cluster.store.lease(me).await;
        if let Err(e) = &granted {
            tracing::warn!(error = %e, "lease not renewed");
        }
        lease.answered(sent, Instant::now(), granted.ok());
    }
    let role = match lease.settle(Instant::now()) {
        Change::Acquired => "active",
        Change::Lost => "standby",
        Change::None => return lease.active(Instant::now()),
    };
    tracing::info!(dispatcher = %me, role, "lease changed hands");
    service
        .tables()
        .log_by(unix_ms(), "lease", "", "", format!("{me} {role}"), "");
    lease.active(Instant::now())
}

/// The active dispatcher's duties: call resolution and key housekeeping. Each store
/// write first checks that our term still runs: the awaits before it take time, and a
/// term that ended meanwhile may already be another dispatcher's.
async fn singleton_duties(
    store: &Store,
    lease: &Lease,
    resolver: &mut Resolver,
    rows: &[Row],
) -> crate::store::StoreResult<()> {
    let active = || lease.active(Instant::now());
    if !active() {
        return Ok(());
    }
    let duplicates = Resolver::duplicates(rows);
    let placed: HashMap<String, String> = duplicates
        .iter()
        .cloned()
        .zip(store.placements(&duplicates).await?)
        .filter_map(|(c, s)| Some((c, s?)))
        .collect();
    for order in resolver.sweep(Instant::now(), rows, &placed) {
        if !active() {
            return Ok(());
        }
        tracing::info!(?order, "duplicate conference found");
        store.push_order(&order).await?;
    }
    if !active() {
        return Ok(());
    }
    match store.housekeep().await? {
        0 => {}
        n => tracing::info!(dropped = n, "stale capacity rows dropped from the index"),
    }
    Ok(())
}

/// Carries out the merge and punt orders queued for this dispatcher.
async fn take_orders(service: &Service) {
    match service
        .cluster
        .store
        .take_orders(&service.settings().id)
        .await
    {
        Ok(orders) => {
            for o in orders.merges {
                super::ops::merge(service, &o).await;
            }
            for o in orders.punts {
                super::ops::carry_punt(service, &o).await;
            }
        }
        Err(e) => {
            service.store_failed::<()>(e);
        }
    }
}

/// The store's loop; runs for the dispatcher's life.
pub(crate) async fn run(service: Arc<Service>) {
    let shared = service.cluster.store.shared();
    let mut lease = Lease::new(Instant::now(), LEASE_TTL);
    let mut resolver = Resolver::default();
    let mut every = tokio::time::interval(SYNC_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut slow_due = Instant::now();
    loop {
        every.tick().await;
        let now = Instant::now();
        let slow = now >= slow_due;
        if slow {
            slow_due = now + SLOW_EVERY;
        }
        let linked: Vec<String> = service.links().keys().cloned().collect();
        keep_placements(&service, &linked, slow).await;
        if !shared {
            // Alone on a memory store: always the active one, nothing to elect.
            service.cluster.set_active(true);
            continue;
        }
        exchange_rows(&service, &linked).await;
        let active = hold_lease(&service, &mut lease).await;
        service.cluster.set_active(active);
        if slow {
            let rosters = exchange_rosters(&service, &linked, active).await;
            let store = &service.cluster.store;
            if let Err(e) = singleton_duties(store, &lease, &mut resolver, &rosters).await {
                service.store_failed::<()>(e);
            }
        }
        take_orders(&service).await;
    }
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
