//! Token buckets by key (an account, an IP address), sans-IO: the caller passes the time.
//! A dispatcher uses them to cap how fast one account or one address may join, so that a
//! script hammering `join` costs a reject line, not a placement and a ticket.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Keys tracked before full buckets are forgotten (a full bucket is the same as none).
const PRUNE_AT: usize = 16 * 1024;

/// A rate: `per_sec` tokens a second, at most `burst` saved up. `per_sec == 0.0` turns
/// the limit off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_sec: f64,
    pub burst: u32,
}

impl Rate {
    pub const OFF: Rate = Rate {
        per_sec: 0.0,
        burst: 0,
    };

    pub fn is_off(&self) -> bool {
        self.per_sec <= 0.0
    }

    /// A rate must have a burst of at least 1 to let anything through.
    pub fn check(&self, name: &str) -> Result<(), String> {
        if !self.per_sec.is_finite() || self.per_sec < 0.0 {
            return Err(format!("`{name}` must be a rate ≥ 0 (0: no limit)"));
        }
        if !self.is_off() && self.burst == 0 {
            return Err(format!("the burst of `{name}` must be at least 1"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One token bucket per key, all at the same [`Rate`].
#[derive(Debug)]
pub struct Buckets<K> {
    rate: Rate,
    buckets: HashMap<K, Bucket>,
}

impl<K: Eq + Hash + Clone> Buckets<K> {
    pub fn new(rate: Rate) -> Self {
        Buckets {
            rate,
            buckets: HashMap::new(),
        }
    }

    fn refill(rate: Rate, b: &mut Bucket, now: Instant) {
        let dt = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + dt * rate.per_sec).min(f64::from(rate.burst));
        b.at = now;
    }

    /// Whether `key` may act now; if not, how long until it may. Takes a token when it may.
    pub fn check(&mut self, key: &K, now: Instant) -> Result<(), Duration> {
        self.wait(key, now)?;
        self.take(key, now);
        Ok(())
    }

    /// How long `key` must wait for a token (`Ok` when it has one), taking none.
    pub fn wait(&mut self, key: &K, now: Instant) -> Result<(), Duration> {
        if self.rate.is_off() {
            return Ok(());
        }
        let rate = self.rate;
        let Some(b) = self.buckets.get_mut(key) else {
            return Ok(());
        };
        Self::refill(rate, b, now);
        if b.tokens >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / rate.per_sec))
        }
    }

    /// Takes a token from `key` (which may go below zero only if [`Buckets::wait`] said so).
    pub fn take(&mut self, key: &K, now: Instant) {
        if self.rate.is_off() {
            return;
        }
        if self.buckets.len() >= PRUNE_AT {
            self.prune(now);
        }
        let rate = self.rate;
        let b = self.buckets.entry(key.clone()).or_insert(Bucket {
            tokens: f64::from(rate.burst),
            at: now,
        });
        Self::refill(rate, b, now);
        b.tokens -= 1.0;
    }

    /// Forgets the buckets that have filled up again.
    fn prune(&mut self, now: Instant) {
        let rate = self.rate;
        self.buckets.retain(|_, b| {
            Self::refill(rate, b, now);
            b.tokens < f64::from(rate.burst)
        });
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Buckets::new(Rate {
            per_sec: 2.0,
            burst: 3,
        });
        for _ in 0..3 {
            b.check(&"a", t0).unwrap();
        }
        let wait = b.check(&"a", t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(490) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        // Another key has its own bucket.
        b.check(&"b", t0).unwrap();
        // Half a second later one more token.
        let t1 = t0 + Duration::from_millis(500);
        b.check(&"a", t1).unwrap();
        assert!(b.check(&"a", t1).is_err());
        // Long idle: back to the burst, not more.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            b.check(&"a", t2).unwrap();
        }
        assert!(b.check(&"a", t2).is_err());
    }

    #[test]
    fn off_lets_everything_through_and_tracks_nothing() {
        let t0 = Instant::now();
        let mut b = Buckets::new(Rate::OFF);
        for _ in 0..1000 {
            b.check(&1u32, t0).unwrap();
        }
        assert!(b.is_empty());
    }

    #[test]
    fn full_buckets_are_forgotten() {
        let t0 = Instant::now();
        let mut b = Buckets::new(Rate {
            per_sec: 1.0,
            burst: 1,
        });
        for k in 0..PRUNE_AT as u32 {
            b.check(&k, t0).unwrap();
        }
        assert_eq!(b.len(), PRUNE_AT);
        b.check(&u32::MAX, t0 + Duration::from_secs(2)).unwrap();
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn bad_rates_are_named() {
        assert!(Rate::OFF.check("x").is_ok());
        let e = Rate {
            per_sec: 1.0,
            burst: 0,
        }
        .check("join_rate_ip")
        .unwrap_err();
        assert!(e.contains("join_rate_ip"), "{e}");
        assert!(Rate {
            per_sec: -1.0,
            burst: 1
        }
        .check("x")
        .is_err());
    }
}
