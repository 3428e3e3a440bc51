//! Call resolution: finds conferences running on two servers at once (after a Redis
//! failover lost a placement, or a partition) and decides who merges into whom. Sans-IO:
//! rows and time come in, orders go out; the active dispatcher carries them out.

use super::{MergeOrder, Row};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// An order for the same side is not repeated sooner than this: its clients are moving.
pub const COOLDOWN: Duration = Duration::from_secs(5);

/// The side of a duplicated conference that everyone moves to: the most participants,
/// ties to the lowest server id, so every dispatcher would pick the same.
fn winner<'a>(sides: &[(&'a str, u32, &'a str)]) -> &'a str {
    sides
        .iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
        .map(|s| s.0)
        .unwrap_or_default()
}

/// Remembers recent orders so a merge in progress is not ordered again.
#[derive(Debug, Default)]
pub struct Resolver {
    recent: HashMap<(String, String), Instant>,
}

impl Resolver {
    /// The merges the rows call for now.
    pub fn sweep(&mut self, now: Instant, rows: &[Row]) -> Vec<MergeOrder> {
        self.recent
            .retain(|_, at| now.saturating_duration_since(*at) < COOLDOWN);
        // conference -> (server, participants, its dispatcher)
        let mut sides: BTreeMap<&str, Vec<(&str, u32, &str)>> = BTreeMap::new();
        for r in rows {
            for (conf, n) in &r.roster {
                if *n > 0 {
                    sides
                        .entry(conf)
                        .or_default()
                        .push((&r.id, *n, &r.dispatcher));
                }
            }
        }
        let mut orders = Vec::new();
        for (conf, sides) in sides.iter().filter(|(_, s)| s.len() > 1) {
            let to = winner(sides);
            for (from, _, dispatcher) in sides.iter().filter(|s| s.0 != to) {
                let key = (conf.to_string(), from.to_string());
                if self.recent.contains_key(&key) {
                    continue;
                }
                self.recent.insert(key, now);
                orders.push(MergeOrder {
                    conference: conf.to_string(),
                    from: from.to_string(),
                    to: to.to_owned(),
                    dispatcher: dispatcher.to_string(),
                });
            }
        }
        orders
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, dispatcher: &str, roster: &[(&str, u32)]) -> Row {
        Row {
            id: id.into(),
            client_addr: "127.0.0.1:1".parse().unwrap(),
            caps: "audio,reflect".into(),
            total: 100,
            unused: 100,
            conferences: roster.len() as u32,
            users: roster.iter().map(|r| r.1).sum(),
            cpu_pct: 0.0,
            pps: 0,
            loss_pct: 0.0,
            reported_unix_ms: 0,
            draining: false,
            maintenance: None,
            dispatcher: dispatcher.into(),
            roster: roster.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
        }
    }

    #[test]
    fn smaller_side_moves_to_the_larger_sides_server() {
        let rows = [
            row("ms-1", "d1", &[("dup", 1), ("solo", 4)]),
            row("ms-2", "d2", &[("dup", 3)]),
        ];
        let orders = Resolver::default().sweep(Instant::now(), &rows);
        assert_eq!(
            orders,
            vec![MergeOrder {
                conference: "dup".into(),
                from: "ms-1".into(),
                to: "ms-2".into(),
                dispatcher: "d1".into(),
            }]
        );
    }

    #[test]
    fn a_tie_goes_to_the_lowest_server_id_whatever_the_row_order() {
        let a = [row("ms-2", "d", &[("c", 2)]), row("ms-1", "d", &[("c", 2)])];
        let b = [row("ms-1", "d", &[("c", 2)]), row("ms-2", "d", &[("c", 2)])];
        for rows in [a, b] {
            let o = Resolver::default().sweep(Instant::now(), &rows);
            assert_eq!(o.len(), 1);
            assert_eq!((o[0].from.as_str(), o[0].to.as_str()), ("ms-2", "ms-1"));
        }
    }

    #[test]
    fn three_sides_all_move_to_the_largest() {
        let rows = [
            row("ms-1", "d1", &[("c", 1)]),
            row("ms-2", "d2", &[("c", 5)]),
            row("ms-3", "d1", &[("c", 2)]),
        ];
        let mut o = Resolver::default().sweep(Instant::now(), &rows);
        o.sort_by(|a, b| a.from.cmp(&b.from));
        let moves: Vec<_> = o.iter().map(|m| (m.from.as_str(), m.to.as_str())).collect();
        assert_eq!(moves, [("ms-1", "ms-2"), ("ms-3", "ms-2")]);
    }

    #[test]
    fn no_duplicates_no_orders_and_empty_sides_do_not_count() {
        let rows = [
            row("ms-1", "d1", &[("a", 1), ("b", 0)]),
            row("ms-2", "d2", &[("b", 2), ("c", 1)]),
        ];
        assert!(Resolver::default().sweep(Instant::now(), &rows).is_empty());
    }

    #[test]
    fn an_order_is_not_repeated_while_its_clients_move() {
        let rows = [
            row("ms-1", "d1", &[("c", 1)]),
            row("ms-2", "d2", &[("c", 3)]),
        ];
        let mut r = Resolver::default();
        let t0 = Instant::now();
        assert_eq!(r.sweep(t0, &rows).len(), 1);
        assert!(r.sweep(t0 + Duration::from_secs(1), &rows).is_empty());
        assert_eq!(r.sweep(t0 + COOLDOWN, &rows).len(), 1);
    }
}
