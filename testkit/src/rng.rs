//! One seeded generator for every test: loss patterns, jitter, random packets.
//!
//! xorshift64 (Marsaglia's 13/7/17 triple): tiny, fast and, above all, the same sequence for
//! the same seed on every machine and every run, which a library generator does not promise
//! across its versions. Not for anything cryptographic.

/// Seeded xorshift64.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`. Zero, xorshift's one fixed point, is replaced by a constant.
    pub const fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)] // not an iterator: it never ends
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n` > 0). Plain modulo: the bias is far below what a test sees.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        self.next() % n
    }

    /// True with probability `percent` / 100 (resolution 1e-4 percent).
    pub fn percent(&mut self, percent: f64) -> bool {
        percent > 0.0 && (self.below(1_000_000) as f64) < percent * 10_000.0
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.byte();
        }
    }

    /// One of `items`, chosen uniformly.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A new generator whose sequence depends on this one's seed and `stream` only, so
    /// parts of a simulation (one per link, say) do not disturb each other's randomness.
    pub fn fork(&self, stream: u64) -> Rng {
        // splitmix64's finaliser spreads close seeds and stream numbers far apart.
        let mut z = self.0 ^ stream.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng::new(z ^ (z >> 31))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_seeds_differ() {
        let a: Vec<u64> = (0..100).scan(Rng::new(7), |r, _| Some(r.next())).collect();
        let b: Vec<u64> = (0..100).scan(Rng::new(7), |r, _| Some(r.next())).collect();
        let c: Vec<u64> = (0..100).scan(Rng::new(8), |r, _| Some(r.next())).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|&x| x != 0));
    }

    #[test]
    fn xorshift_step_is_marsaglias() {
        // One step by hand from the seed 1: x ^= x << 13; x ^= x >> 7; x ^= x << 17.
        let mut x: u64 = 1;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        assert_eq!(Rng::new(1).next(), x);
    }

    #[test]
    fn zero_seed_still_moves() {
        let mut r = Rng::new(0);
        assert_ne!(r.next(), 0);
    }

    #[test]
    fn percent_is_about_right() {
        let mut r = Rng::new(42);
        let hits = (0..100_000).filter(|_| r.percent(10.0)).count();
        assert!((9_000..11_000).contains(&hits), "{hits}");
        assert!(!(0..1000).any(|_| r.percent(0.0)));
        assert!((0..1000).all(|_| r.percent(100.0)));
    }

    #[test]
    fn below_and_pick_stay_in_range() {
        let mut r = Rng::new(3);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let x = r.below(5) as usize;
            seen[x] = true;
            assert!([10, 20, 30].contains(r.pick(&[10, 20, 30])));
        }
        assert!(seen.iter().all(|&s| s), "{seen:?}");
    }

    #[test]
    fn forks_are_independent_and_repeatable() {
        let root = Rng::new(99);
        let (mut a, mut a2, mut b) = (root.fork(0), root.fork(0), root.fork(1));
        let (x, y, z) = (a.next(), a2.next(), b.next());
        assert_eq!(x, y);
        assert_ne!(x, z);
    }
}
