//! The lease that elects the active dispatcher, as a state machine with time passed in.
//!
//! The store grants `noc:lease` for a TTL. We count our term from when we *sent* the
//! request, not from when the answer came, so we always step down before the store lets
//! another dispatcher take over: two actives never overlap by our own reckoning.

use std::time::{Duration, Instant};

/// What changed on an answer from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    /// We became the active dispatcher.
    Acquired,
    /// We were active and are not any more.
    Lost,
}

#[derive(Debug, Clone)]
pub struct Lease {
    ttl: Duration,
    /// Renew this often: a third of the TTL leaves two tries before it runs out.
    every: Duration,
    held_until: Option<Instant>,
    next_try: Instant,
    was_active: bool,
}

impl Lease {
    pub fn new(now: Instant, ttl: Duration) -> Lease {
        Lease {
            ttl,
            every: ttl / 3,
            held_until: None,
            next_try: now,
            was_active: false,
        }
    }

    /// Time to ask the store (take or renew).
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next_try
    }

    /// The store answered a request sent at `sent`: `Some(granted)`, or `None` when it
    /// could not be reached (then a held term runs out on its own).
    pub fn answered(&mut self, sent: Instant, now: Instant, granted: Option<bool>) -> Change {
        // A standby asks twice as often as the holder renews, to take over sooner.
        let wait = if granted == Some(false) {
            self.every / 2
        } else {
            self.every
        };
        self.next_try = sent + wait;
        match granted {
            Some(true) => self.held_until = Some(sent + self.ttl),
            Some(false) => self.held_until = None,
            None => {}
        }
        self.settle(now)
    }

    /// Whether we are the active dispatcher now.
    pub fn active(&self, now: Instant) -> bool {
        self.held_until.is_some_and(|until| now < until)
    }

    /// Notes a change of role since the last call (an expired term is noticed here too).
    pub fn settle(&mut self, now: Instant) -> Change {
        let active = self.active(now);
        let change = match (self.was_active, active) {
            (false, true) => Change::Acquired,
            (true, false) => Change::Lost,
            _ => Change::None,
        };
        self.was_active = active;
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(2);

    #[test]
    fn granted_lease_makes_us_active_until_ttl_from_sending() {
        let t0 = Instant::now();
        let mut l = Lease::new(t0, TTL);
        assert!(l.due(t0));
        assert!(!l.active(t0));
        // The answer comes 300 ms later; the term still counts from t0.
        let c = l.answered(t0, t0 + Duration::from_millis(300), Some(true));
        assert_eq!(c, Change::Acquired);
        assert!(l.active(t0 + Duration::from_millis(1999)));
        assert!(!l.active(t0 + TTL));
        assert!(!l.due(t0 + Duration::from_millis(600)));
        assert!(l.due(t0 + TTL / 3));
    }

    #[test]
    fn refused_lease_keeps_us_standby() {
        let t0 = Instant::now();
        let mut l = Lease::new(t0, TTL);
        assert_eq!(l.answered(t0, t0, Some(false)), Change::None);
        assert!(!l.active(t0));
        assert!(!l.due(t0 + TTL / 6 - Duration::from_millis(1)));
        assert!(l.due(t0 + TTL / 6));
    }

    #[test]
    fn renewals_keep_us_active_and_a_refusal_steps_us_down() {
        let t0 = Instant::now();
        let mut l = Lease::new(t0, TTL);
        l.answered(t0, t0, Some(true));
        let mut t = t0;
        for _ in 0..10 {
            t += TTL / 3;
            assert!(l.due(t));
            assert_eq!(l.answered(t, t, Some(true)), Change::None);
            assert!(l.active(t));
        }
        assert_eq!(l.answered(t, t, Some(false)), Change::Lost);
        assert!(!l.active(t));
    }

    #[test]
    fn unreachable_store_lets_the_term_run_out() {
        let t0 = Instant::now();
        let mut l = Lease::new(t0, TTL);
        l.answered(t0, t0, Some(true));
        let t1 = t0 + TTL / 3;
        assert_eq!(l.answered(t1, t1, None), Change::None);
        assert!(l.active(t1));
        // No answer again, and the term granted at t0 ends at t0 + TTL.
        let t2 = t0 + TTL;
        assert_eq!(l.answered(t2, t2, None), Change::Lost);
        assert!(!l.active(t2));
    }

    #[test]
    fn standby_takes_over_after_the_active_stops_renewing() {
        // Two dispatchers on one memory store, in virtual time.
        let store = super::super::memory::MemoryStore::default();
        let t0 = Instant::now();
        let (mut a, mut b) = (Lease::new(t0, TTL), Lease::new(t0, TTL));
        a.answered(t0, t0, Some(store.lease(t0, "a", TTL)));
        b.answered(t0, t0, Some(store.lease(t0, "b", TTL)));
        assert!(a.active(t0) && !b.active(t0));
        // `a` dies at t0. `b` keeps trying when due and wins once the lease expires.
        let mut t = t0;
        let took_over = loop {
            t += Duration::from_millis(50);
            if !b.due(t) {
                continue;
            }
            if b.answered(t, t, Some(store.lease(t, "b", TTL))) == Change::Acquired {
                break t;
            }
            assert!(t < t0 + 2 * TTL, "standby never took over");
        };
        assert!(took_over >= t0 + TTL, "took over while a's term ran");
        assert!(took_over <= t0 + TTL + TTL / 6);
    }
}
