//! Call resolution: finds conferences running on two servers at once (after a Redis
//! failover lost a placement, or a partition) and decides who merges into whom. Sans-IO:
//! rows, the store's placements and time come in, orders go out; the active dispatcher
//! carries them out.
//!
//! A punt also runs a conference on two servers for a moment (its clients are moving),
//! so a duplicate is only acted on when two sweeps in a row see it, and the store's
//! placement (which a punt updates) names the side everyone moves to.

use super::{MergeOrder, Row};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// An order for the same side is not repeated sooner than this: its clients are moving.
pub const COOLDOWN: Duration = Duration::from_secs(5);

/// One server's part of a duplicated conference.
#[derive(Debug, Clone, Copy)]
struct Side<'a> {
    server: &'a str,
    participants: u32,
    dispatcher: &'a str,
    draining: bool,
}

/// The side of a duplicated conference that everyone moves to: the one the store's
/// placement names, else the most participants, ties to the lowest server id, so every
/// dispatcher would pick the same. A draining server is never the target; `None` when
/// every side drains.
fn winner<'a>(sides: &[Side<'a>], placed: Option<&str>) -> Option<&'a str> {
    let open = || sides.iter().filter(|s| !s.draining);
    if let Some(s) = open().find(|s| Some(s.server) == placed) {
        return Some(s.server);
    }
    open()
        .max_by(|a, b| {
            a.participants
                .cmp(&b.participants)
                .then_with(|| b.server.cmp(a.server))
        })
        .map(|s| s.server)
}

/// Remembers recent orders so a merge in progress is not ordered again, and the
/// duplicates of the last sweep so a short overlap (a punt) is not ordered at all.
#[derive(Debug, Default)]
pub struct Resolver {
    recent: HashMap<(String, String), Instant>,
    seen: HashSet<String>,
}

impl Resolver {
    /// The conferences the rows show on more than one server: the caller reads their
    /// placements from the store for [`Resolver::sweep`].
    pub fn duplicates(rows: &[Row]) -> Vec<String> {
        sides(rows)
            .into_iter()
            .filter(|(_, s)| s.len() > 1)
            .map(|(c, _)| c.to_owned())
            .collect()
    }

    /// The merges the rows call for now; `placed` is the store's placement of each
    /// duplicated conference (missing when it has none).
    pub fn sweep(
        &mut self,
        now: Instant,
        rows: &[Row],
        placed: &HashMap<String, String>,
    ) -> Vec<MergeOrder> {
        self.recent
            .retain(|_, at| now.saturating_duration_since(*at) < COOLDOWN);
        let sides = sides(rows);
        let duplicated: HashSet<String> = sides
            .iter()
            .filter(|(_, s)| s.len() > 1)
            .map(|(c, _)| c.to_string())
            .collect();
        let mut orders = Vec::new();
        for (conf, sides) in sides
            .iter()
            .filter(|(c, s)| s.len() > 1 && self.seen.contains(**c))
        {
            let Some(to) = winner(sides, placed.get(*conf).map(String::as_str)) else {
                continue;
            };
            for side in sides.iter().filter(|s| s.server != to) {
                let key = (conf.to_string(), side.server.to_string());
                if self.recent.contains_key(&key) {
                    continue;
                }
                self.recent.insert(key, now);
                orders.push(MergeOrder {
                    conference: conf.to_string(),
                    from: side.server.to_string(),
                    to: to.to_owned(),
                    dispatcher: side.dispatcher.to_string(),
                });
            }
        }
        self.seen = duplicated;
        orders
    }
}

/// Conference -> the servers running it with participants.
fn sides(rows: &[Row]) -> BTreeMap<&str, Vec<Side<'_>>> {
    let mut sides: BTreeMap<&str, Vec<Side<'_>>> = BTreeMap::new();
    for r in rows {
        for (conf, n) in &r.roster {
            if *n > 0 {
                sides.entry(conf).or_default().push(Side {
                    server: &r.id,
                    participants: *n,
                    dispatcher: &r.dispatcher,
                    draining: r.draining,
                });
            }
        }
    }
    sides
}

#[cfg(test)]
mod tests {
    use super::*;

    const SWEEP: Duration = Duration::from_secs(1);

    fn row(id: &str, dispatcher: &str, roster: &[(&str, u32)]) -> Row {
        Row {
            id: id.into(),
            client_addr: "127.0.0.1:1".parse().unwrap(),
            ws_url: None,
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

    fn none() -> HashMap<String, String> {
        HashMap::new()
    }

    /// Two sweeps a second apart over the same rows: the orders of the second.
    fn settled(rows: &[Row], placed: &HashMap<String, String>) -> Vec<MergeOrder> {
        let mut r = Resolver::default();
        let t0 = Instant::now();
        assert!(r.sweep(t0, rows, placed).is_empty(), "first sight orders");
        r.sweep(t0 + SWEEP, rows, placed)
    }

    #[test]
    fn smaller_side_moves_to_the_larger_sides_server() {
        let rows = [
            row("ms-1", "d1", &[("dup", 1), ("solo", 4)]),
            row("ms-2", "d2", &[("dup", 3)]),
        ];
        assert_eq!(Resolver::duplicates(&rows), ["dup"]);
        assert_eq!(
            settled(&rows, &none()),
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
            let o = settled(&rows, &none());
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
        let mut o = settled(&rows, &none());
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
        assert!(Resolver::duplicates(&rows).is_empty());
        assert!(settled(&rows, &none()).is_empty());
    }

    #[test]
    fn an_order_is_not_repeated_while_its_clients_move() {
        let rows = [
            row("ms-1", "d1", &[("c", 1)]),
            row("ms-2", "d2", &[("c", 3)]),
        ];
        let mut r = Resolver::default();
        let t0 = Instant::now();
        assert!(r.sweep(t0, &rows, &none()).is_empty());
        assert_eq!(r.sweep(t0 + SWEEP, &rows, &none()).len(), 1);
        assert!(r.sweep(t0 + 2 * SWEEP, &rows, &none()).is_empty());
        assert_eq!(r.sweep(t0 + SWEEP + COOLDOWN, &rows, &none()).len(), 1);
    }

    /// A punt moving a conference overlaps its two servers for one sweep: no order.
    #[test]
    fn a_duplicate_seen_in_one_sweep_only_is_not_merged() {
        let moving = [
            row("ms-1", "d1", &[("c", 3)]),
            row("ms-2", "d2", &[("c", 1)]),
        ];
        let moved = [row("ms-1", "d1", &[]), row("ms-2", "d2", &[("c", 4)])];
        let mut r = Resolver::default();
        let t0 = Instant::now();
        assert!(r.sweep(t0, &moving, &none()).is_empty());
        assert!(r.sweep(t0 + SWEEP, &moved, &none()).is_empty());
        // Seen again later, it must be seen twice again.
        assert!(r.sweep(t0 + 2 * SWEEP, &moving, &none()).is_empty());
    }

    /// The store's placement (which a punt updates) beats the participant count: the
    /// punt's target is kept even while most clients are still on the old server.
    #[test]
    fn the_stores_placement_names_the_winner_over_the_larger_side() {
        let rows = [
            row("ms-1", "d1", &[("c", 5)]),
            row("ms-2", "d2", &[("c", 1)]),
        ];
        let placed = HashMap::from([("c".to_string(), "ms-2".to_string())]);
        let o = settled(&rows, &placed);
        assert_eq!(o.len(), 1);
        assert_eq!((o[0].from.as_str(), o[0].to.as_str()), ("ms-1", "ms-2"));
        // A placement naming neither side falls back to the counts.
        let elsewhere = HashMap::from([("c".to_string(), "ms-9".to_string())]);
        let o = settled(&rows, &elsewhere);
        assert_eq!((o[0].from.as_str(), o[0].to.as_str()), ("ms-2", "ms-1"));
    }

    #[test]
    fn a_draining_server_is_never_the_target() {
        let mut big = row("ms-1", "d1", &[("c", 5)]);
        big.draining = true;
        let rows = [big.clone(), row("ms-2", "d2", &[("c", 1)])];
        // Not by count, and not by the placement either.
        let placed = HashMap::from([("c".to_string(), "ms-1".to_string())]);
        for p in [none(), placed] {
            let o = settled(&rows, &p);
            assert_eq!(o.len(), 1);
            assert_eq!((o[0].from.as_str(), o[0].to.as_str()), ("ms-1", "ms-2"));
        }
        // Every side draining: nowhere to go.
        let mut other = row("ms-2", "d2", &[("c", 1)]);
        other.draining = true;
        assert!(settled(&[big, other], &none()).is_empty());
    }
}
