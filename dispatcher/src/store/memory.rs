//! The in-process store: what one dispatcher needs, with the same semantics as the Redis
//! keys (claim if absent, TTLs, the lease), so the placement rules are unit-tested on it
//! in virtual time. Cloning shares it, which is how tests run two dispatchers on one.

use super::{MergeOrder, PuntOrder, PuntReply, Row, RowKind};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Inner {
    confs: HashMap<String, (String, Instant)>,
    rows: HashMap<String, (Row, Instant)>,
    rosters: HashMap<String, (Row, Instant)>,
    /// The `noc:servers` index: ids whose row may still exist.
    index: BTreeSet<String>,
    lease: Option<(String, Instant)>,
    orders: HashMap<String, Vec<MergeOrder>>,
    punts: HashMap<String, Vec<PuntOrder>>,
    replies: HashMap<String, (PuntReply, Instant)>,
}

/// A store in this process; every method takes the time, as the sans-IO parts do.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore(Arc<Mutex<Inner>>);

impl MemoryStore {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock would be a bug in a method below; keep serving.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `SET noc:conf:NAME server NX PX ttl`, then `GET`: the winner.
    pub fn claim(&self, now: Instant, conference: &str, server: &str, ttl: Duration) -> String {
        let mut g = self.inner();
        match g.confs.get_mut(conference) {
            Some((s, until)) if *until > now => {
                if s == server {
                    *until = now + ttl;
                }
                s.clone()
            }
            _ => {
                g.confs
                    .insert(conference.to_owned(), (server.to_owned(), now + ttl));
                server.to_owned()
            }
        }
    }

    /// Compare-and-set from `old` to `new`, refused while `old`'s capacity row lives (a
    /// server another dispatcher just registered is not gone); the winner.
    pub fn replace(
        &self,
        now: Instant,
        conference: &str,
        old: &str,
        new: &str,
        ttl: Duration,
    ) -> String {
        let mut g = self.inner();
        let old_alive = g.rows.get(old).is_some_and(|(_, until)| *until > now);
        match g.confs.get(conference) {
            Some((s, until)) if *until > now && (s != old || old_alive) => s.clone(),
            _ => {
                g.confs
                    .insert(conference.to_owned(), (new.to_owned(), now + ttl));
                new.to_owned()
            }
        }
    }

    pub fn release(&self, now: Instant, conference: &str, server: &str) {
        let mut g = self.inner();
        if g.confs
            .get(conference)
            .is_some_and(|(s, until)| s == server || *until <= now)
        {
            g.confs.remove(conference);
        }
    }

    pub fn force(&self, now: Instant, conference: &str, server: &str, ttl: Duration) {
        self.inner()
            .confs
            .insert(conference.to_owned(), (server.to_owned(), now + ttl));
    }

    /// Where `conference` is placed, if anywhere.
    pub fn placed(&self, now: Instant, conference: &str) -> Option<String> {
        self.inner()
            .confs
            .get(conference)
            .filter(|(_, until)| *until > now)
            .map(|(s, _)| s.clone())
    }

    pub fn put_rows(
        &self,
        now: Instant,
        kind: RowKind,
        rows: &[Row],
        gone: &[String],
        ttl: Duration,
    ) {
        let mut g = self.inner();
        for r in rows {
            g.index.insert(r.id.clone());
            let table = match kind {
                RowKind::Capacity => &mut g.rows,
                RowKind::Roster => &mut g.rosters,
            };
            table.insert(r.id.clone(), (r.clone(), now + ttl));
        }
        for id in gone {
            g.rows.remove(id);
            g.rosters.remove(id);
            g.index.remove(id);
        }
    }

    pub fn rows(&self, now: Instant, kind: RowKind) -> Vec<Row> {
        let g = self.inner();
        let table = match kind {
            RowKind::Capacity => &g.rows,
            RowKind::Roster => &g.rosters,
        };
        g.index
            .iter()
            .filter_map(|id| table.get(id))
            .filter(|(_, until)| *until > now)
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Renews the lease if `id` holds it, takes it if nobody does.
    pub fn lease(&self, now: Instant, id: &str, ttl: Duration) -> bool {
        let mut g = self.inner();
        match &g.lease {
            Some((holder, until)) if *until > now && holder != id => false,
            _ => {
                g.lease = Some((id.to_owned(), now + ttl));
                true
            }
        }
    }

    pub fn push_order(&self, order: &MergeOrder) {
        self.inner()
            .orders
            .entry(order.dispatcher.clone())
            .or_default()
            .push(order.clone());
    }

    pub fn take_orders(&self, me: &str) -> Vec<MergeOrder> {
        self.inner().orders.remove(me).unwrap_or_default()
    }

    pub fn push_punt(&self, order: &PuntOrder) {
        self.inner()
            .punts
            .entry(order.dispatcher.clone())
            .or_default()
            .push(order.clone());
    }

    pub fn take_punts(&self, me: &str) -> Vec<PuntOrder> {
        self.inner().punts.remove(me).unwrap_or_default()
    }

    pub fn put_reply(&self, now: Instant, id: &str, reply: &PuntReply, ttl: Duration) {
        let mut g = self.inner();
        g.replies.retain(|_, (_, until)| *until > now);
        g.replies.insert(id.to_owned(), (reply.clone(), now + ttl));
    }

    pub fn reply(&self, now: Instant, id: &str) -> Option<PuntReply> {
        self.inner()
            .replies
            .get(id)
            .filter(|(_, until)| *until > now)
            .map(|(r, _)| r.clone())
    }

    pub fn housekeep(&self, now: Instant) -> usize {
        let mut g = self.inner();
        let Inner { rows, index, .. } = &mut *g;
        rows.retain(|_, (_, until)| *until > now);
        let before = index.len();
        index.retain(|id| rows.contains_key(id));
        before - index.len()
    }
}
