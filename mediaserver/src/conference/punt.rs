//! Moving conferences off this server (seed 003's punt), for two reasons: past the
//! high-water mark it punts one conference at a time, and on SIGTERM it drains, punting
//! every conference and refusing new ones. The dispatcher picks the target (our `punt`
//! line on the registry link) and answers with a `dispatch` per participant, which
//! the service forwards to the clients, who move.

use super::{lock, Conferences};
use protocol::MsMsg;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A conference is punted at most this often: one request in flight per conference.
pub(crate) const PUNT_GAP: Duration = Duration::from_secs(3);
/// How often a drain looks at what is left.
const DRAIN_POLL: Duration = Duration::from_millis(100);
/// How often a drain logs its progress.
const DRAIN_LOG: Duration = Duration::from_secs(1);

/// Which conference to punt so that `users` (capacity units) comes back to `limit` or
/// under: the smallest conference that is enough on its own, else the largest (more
/// follow on later ticks). Smallest-that-suffices moves the fewest people. `sizes` lists
/// (conference, units).
pub(crate) fn choose<'a>(
    sizes: &[(&'a str, usize)],
    users: usize,
    limit: usize,
) -> Option<&'a str> {
    let excess = users.checked_sub(limit).filter(|&e| e > 0)?;
    let candidates = sizes.iter().filter(|(_, n)| *n > 0);
    candidates
        .clone()
        .filter(|(_, n)| *n >= excess)
        // Ties go to the name, so the choice does not depend on hash order.
        .min_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)))
        .or_else(|| candidates.max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0))))
        .map(|(c, _)| *c)
}

impl Conferences {
    /// Asks the dispatcher to punt `conference`, unless a request for it is in flight
    /// (sent less than [`PUNT_GAP`] ago). Returns whether a request went out.
    pub(crate) fn request_punt(&self, conference: &str, now: Instant) -> bool {
        let mut punts = lock(&self.punts);
        punts.retain(|_, at| now.saturating_duration_since(*at) < PUNT_GAP);
        if punts.contains_key(conference) {
            return false;
        }
        punts.insert(conference.to_owned(), now);
        drop(punts);
        tracing::info!(conference, "asking the dispatcher to punt");
        self.notify(MsMsg::Punt {
            conference: conference.to_owned(),
        });
        true
    }

    /// (conference, members) of every room, and the users in all.
    fn sizes(&self) -> (Vec<(String, usize)>, usize) {
        let rooms = self.rooms();
        let sizes: Vec<(String, usize)> = rooms
            .iter()
            .map(|(name, r)| (name.clone(), r.members().len()))
            .collect();
        let users = sizes.iter().map(|(_, n)| n).sum();
        (sizes, users)
    }

    /// (conference, capacity units) of every room, and the units in all: what the
    /// high-water mark compares with `capacity`, as the reports do.
    fn loads(&self) -> (Vec<(String, usize)>, usize) {
        let rooms = self.rooms();
        let cost = &self.settings.cost;
        let loads: Vec<(String, usize)> = rooms
            .iter()
            .map(|(name, r)| (name.clone(), r.units(cost) as usize))
            .collect();
        let used = loads.iter().map(|(_, n)| n).sum();
        (loads, used)
    }

    /// Called on every report tick: past the high-water mark, punts one conference (one
    /// not already on its way out).
    pub(crate) fn high_water(&self, now: Instant) {
        high_water(self, now)
    }
}

fn high_water(server: &Conferences, now: Instant) {
    if server.is_draining() {
        return;
    }
    let limit = (u64::from(server.settings.capacity) * u64::from(server.settings.high_water) / 100)
        as usize;
    // In capacity units, like `capacity` and the reports.
    let (sizes, used) = server.loads();
    if used <= limit {
        return;
    }
    let in_flight = {
        let punts = lock(&server.punts);
        punts
            .iter()
            .filter(|(_, at)| now.saturating_duration_since(**at) < PUNT_GAP)
            .map(|(c, _)| c.clone())
            .collect::<Vec<_>>()
    };
    // Conferences already being punted will leave; count their units as gone.
    let leaving: usize = sizes
        .iter()
        .filter(|(c, _)| in_flight.contains(c))
        .map(|(_, n)| n)
        .sum();
    // A conference that spreads over linked servers is not moved: the dispatcher seats
    // its newcomers where it has room.
    let linked = server.linked();
    let open: Vec<(&str, usize)> = sizes
        .iter()
        .filter(|(c, _)| !in_flight.contains(c) && !linked.contains(c))
        .map(|(c, n)| (c.as_str(), *n))
        .collect();
    if let Some(c) = choose(&open, used - leaving.min(used), limit) {
        tracing::warn!(
            used,
            limit,
            high_water = server.settings.high_water,
            conference = c,
            "past the high-water mark"
        );
        server.request_punt(c, now);
    }
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every conference left.
    Empty,
    /// `drain_timeout` passed with users still here.
    TimedOut,
    /// `interrupt` completed first (a second signal).
    Interrupted,
}

/// Drains the server: tells the dispatcher, refuses new conferences, punts every
/// conference (again every [`PUNT_GAP`] while it stays), and returns when no user is left,
/// after the drain timeout, or when `interrupt` completes.
pub(crate) async fn drain(
    server: Arc<Conferences>,
    interrupt: impl Future<Output = ()>,
) -> Drained {
    server.draining.store(true, Ordering::Relaxed);
    server.notify(MsMsg::State { draining: true });
    let started = Instant::now();
    // A timeout too large to add means "wait for the last user".
    let deadline = started.checked_add(server.settings.drain_timeout);
    tokio::pin!(interrupt);
    let mut last_log: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let (sizes, users) = server.sizes();
        if users == 0 {
            tracing::info!(
                ms = started.elapsed().as_millis() as u64,
                "draining: done, no users left"
            );
            return Drained::Empty;
        }
        if deadline.is_some_and(|d| now >= d) {
            tracing::warn!(
                conferences = sizes.len(),
                users,
                "draining: timed out with users left"
            );
            return Drained::TimedOut;
        }
        if last_log.is_none_or(|t| now.duration_since(t) >= DRAIN_LOG) {
            last_log = Some(now);
            tracing::info!(
                "draining: {} conferences, {users} users left",
                sizes.iter().filter(|(_, n)| *n > 0).count()
            );
        }
        for (c, n) in &sizes {
            if *n > 0 {
                server.request_punt(c, now);
            }
        }
        tokio::select! {
            () = &mut interrupt => return Drained::Interrupted,
            () = tokio::time::sleep(DRAIN_POLL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::choose;

    #[test]
    fn punts_the_smallest_conference_that_is_enough() {
        let sizes = [("a", 5), ("b", 2), ("c", 3), ("d", 0)];
        // 10 users, limit 8: two must go; "b" alone is enough and smallest.
        assert_eq!(choose(&sizes, 10, 8), Some("b"));
        // Limit 7: three must go; "c" is the smallest with three.
        assert_eq!(choose(&sizes, 10, 7), Some("c"));
        // Limit 2: none is enough alone; the largest goes first.
        assert_eq!(choose(&sizes, 10, 2), Some("a"));
        // Under the mark: nothing.
        assert_eq!(choose(&sizes, 10, 10), None);
        assert_eq!(choose(&sizes, 3, 10), None);
        // Empty rooms are never punted.
        assert_eq!(choose(&[("d", 0)], 1, 0), None);
    }

    #[test]
    fn ties_do_not_depend_on_order() {
        assert_eq!(choose(&[("y", 2), ("x", 2)], 4, 3), Some("x"));
        assert_eq!(choose(&[("x", 2), ("y", 2)], 4, 3), Some("x"));
        assert_eq!(choose(&[("y", 1), ("x", 1)], 4, 0), Some("x"));
    }
}
