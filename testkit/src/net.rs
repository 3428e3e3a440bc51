//! A seeded network in virtual time.
//!
//! Packets go in with their send time and come out at their delivery time, through links
//! that each have their own impairments: fixed delay, jitter, loss, duplication, reordering
//! and a rate limit with a bounded queue. Time is passed in (an `Instant` base plus offsets,
//! as the sans-IO cores take it); nothing sleeps and nothing touches a socket. All randomness
//! comes from one seed, and each link draws from its own stream forked from it, so a run
//! repeats exactly and traffic on one link never changes another link's luck.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use testkit::net::{Impairments, Net};
//!
//! let t0 = Instant::now();
//! let mut net = Net::new(1);
//! net.set("down", Impairments { delay: Duration::from_millis(30), ..Default::default() });
//! net.send(t0, "down", vec![1, 2, 3]);
//! assert!(net.poll(t0).is_none());
//! let d = net.poll(t0 + Duration::from_millis(30)).unwrap();
//! assert_eq!((d.link, d.packet), ("down", vec![1, 2, 3]));
//! ```

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, Instant};

use crate::rng::Rng;

/// What one link does to the packets sent on it. The default is an ideal link: no delay,
/// nothing lost, everything in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Impairments {
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra delay, uniform in `0..=jitter` (microsecond steps), drawn per packet. Jitter
    /// larger than the packet spacing reorders packets, as on a real path.
    pub jitter: Duration,
    /// Percent of packets lost on the wire (after the rate limiter's queue).
    pub loss: f64,
    /// Percent of packets delivered twice; the copy draws its own jitter.
    pub duplicate: f64,
    /// Percent of packets held back by [`Impairments::reorder_hold`], so that packets sent
    /// after them overtake them.
    pub reorder: f64,
    pub reorder_hold: Duration,
    /// A bottleneck in front of the link.
    pub rate: Option<RateLimit>,
}

impl Impairments {
    /// Only `percent` loss.
    pub fn loss(percent: f64) -> Impairments {
        Impairments {
            loss: percent,
            ..Impairments::default()
        }
    }
}

/// A bottleneck: packets leave at `bytes_per_sec`, queueing behind each other; a packet that
/// would take the queue past `queue_bytes` is dropped (tail drop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub bytes_per_sec: u64,
    pub queue_bytes: usize,
}

/// What became of one sent packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Lost on the wire.
    Lost,
    /// Dropped at a full rate-limiter queue.
    QueueFull,
    /// Will be delivered at this time.
    Arrives(Instant),
    /// Will be delivered twice, at these times.
    Twice(Instant, Instant),
}

impl Fate {
    /// Whether the packet will never arrive.
    pub fn dropped(self) -> bool {
        matches!(self, Fate::Lost | Fate::QueueFull)
    }
}

/// Counters of one link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub sent: u64,
    pub lost: u64,
    pub queue_drops: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Deliveries made so far, copies included.
    pub delivered: u64,
    /// Deliveries of a packet after one sent later on the same link had been delivered (what
    /// an RTP receiver counts as reordered).
    pub reordered: u64,
}

/// One packet coming out of the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery<K> {
    pub at: Instant,
    pub link: K,
    pub packet: Vec<u8>,
}

struct Link {
    imp: Impairments,
    rng: Rng,
    /// When the rate limiter's last queued packet has left.
    busy_until: Option<Instant>,
    /// Send order of the latest-sent packet delivered so far.
    newest_delivered: Option<u64>,
    stats: LinkStats,
}

impl Link {
    /// Draws `0..=max` in microseconds.
    fn draw(&mut self, max: Duration) -> Duration {
        if max.is_zero() {
            return Duration::ZERO;
        }
        Duration::from_micros(self.rng.below(max.as_micros() as u64 + 1))
    }

    /// When a `size`-byte packet sent at `at` leaves the rate limiter; `None` if it is
    /// dropped there.
    fn depart(&mut self, at: Instant, size: usize) -> Option<Instant> {
        let Some(rate) = self.imp.rate else {
            return Some(at);
        };
        let start = self.busy_until.map_or(at, |b| b.max(at));
        let backlog = (start - at).as_secs_f64() * rate.bytes_per_sec as f64;
        if backlog + size as f64 > rate.queue_bytes as f64 {
            return None;
        }
        let sending = Duration::from_secs_f64(size as f64 / rate.bytes_per_sec as f64);
        self.busy_until = Some(start + sending);
        Some(start + sending)
    }
}

struct Pending<K> {
    at: Instant,
    /// Insertion order: ties in `at` leave in the order they were sent.
    order: u64,
    link: K,
    /// Send order on its link.
    index: u64,
    packet: Vec<u8>,
}

impl<K> PartialEq for Pending<K> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}

impl<K> Eq for Pending<K> {}

impl<K> PartialOrd for Pending<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> Ord for Pending<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// A set of links named by `K` (a participant id, an address, a direction), with the packets
/// in flight on them.
pub struct Net<K> {
    root: Rng,
    links: BTreeMap<K, Link>,
    in_flight: BinaryHeap<Reverse<Pending<K>>>,
    order: u64,
}

impl<K: Ord + Clone> Net<K> {
    /// An empty network whose randomness all comes from `seed`.
    pub fn new(seed: u64) -> Net<K> {
        Net {
            root: Rng::new(seed),
            links: BTreeMap::new(),
            in_flight: BinaryHeap::new(),
            order: 0,
        }
    }

    fn link_mut(&mut self, link: &K) -> &mut Link {
        if !self.links.contains_key(link) {
            // Streams are numbered in creation order, which a deterministic test repeats.
            let rng = self.root.fork(self.links.len() as u64);
            self.links.insert(
                link.clone(),
                Link {
                    imp: Impairments::default(),
                    rng,
                    busy_until: None,
                    newest_delivered: None,
                    stats: LinkStats::default(),
                },
            );
        }
        self.links.get_mut(link).expect("just inserted")
    }

    /// Sets `link`'s impairments from now on (a link not set is ideal). Packets already in
    /// flight keep their fate; counters and randomness carry on.
    pub fn set(&mut self, link: K, imp: Impairments) {
        self.link_mut(&link).imp = imp;
    }

    /// The impairments `link` has now.
    pub fn impairments(&self, link: &K) -> Impairments {
        self.links
            .get(link)
            .map(|l| l.imp.clone())
            .unwrap_or_default()
    }

    /// Sends `packet` on `link` at `at`, and says what will become of it.
    pub fn send(&mut self, at: Instant, link: K, packet: Vec<u8>) -> Fate {
        let l = self.link_mut(&link);
        let index = l.stats.sent;
        l.stats.sent += 1;
        let Some(left) = l.depart(at, packet.len()) else {
            l.stats.queue_drops += 1;
            return Fate::QueueFull;
        };
        if l.rng.percent(l.imp.loss) {
            l.stats.lost += 1;
            return Fate::Lost;
        }
        let (delay, jitter) = (l.imp.delay, l.imp.jitter);
        let mut first = left + delay + l.draw(jitter);
        if l.rng.percent(l.imp.reorder) {
            first += l.imp.reorder_hold;
        }
        let copy = l
            .rng
            .percent(l.imp.duplicate)
            .then(|| left + delay + l.draw(jitter));
        l.stats.duplicated += u64::from(copy.is_some());
        match copy {
            Some(second) => {
                self.queue(first, link.clone(), index, packet.clone());
                self.queue(second, link, index, packet);
                Fate::Twice(first, second)
            }
            None => {
                self.queue(first, link, index, packet);
                Fate::Arrives(first)
            }
        }
    }

    fn queue(&mut self, at: Instant, link: K, index: u64, packet: Vec<u8>) {
        self.order += 1;
        self.in_flight.push(Reverse(Pending {
            at,
            order: self.order,
            link,
            index,
            packet,
        }));
    }

    /// The next packet due at or before `now`, earliest first; `None` when nothing is due.
    pub fn poll(&mut self, now: Instant) -> Option<Delivery<K>> {
        if self.in_flight.peek()?.0.at > now {
            return None;
        }
        let Reverse(p) = self.in_flight.pop()?;
        let l = self.links.get_mut(&p.link).expect("sent on a known link");
        l.stats.delivered += 1;
        match l.newest_delivered {
            Some(n) if p.index < n => l.stats.reordered += 1,
            _ => l.newest_delivered = Some(p.index),
        }
        Some(Delivery {
            at: p.at,
            link: p.link,
            packet: p.packet,
        })
    }

    /// Every packet due at or before `now`, earliest first.
    pub fn drain(&mut self, now: Instant) -> impl Iterator<Item = Delivery<K>> + '_ {
        std::iter::from_fn(move || self.poll(now))
    }

    /// When the next packet arrives, if any is in flight.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.peek().map(|p| p.0.at)
    }

    /// Packets (copies included) still in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// `link`'s counters (zero for a link never used).
    pub fn stats(&self, link: &K) -> LinkStats {
        self.links.get(link).map(|l| l.stats).unwrap_or_default()
    }
}
