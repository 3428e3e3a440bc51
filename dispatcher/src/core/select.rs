//! Selection as a pipeline (DESIGN.md "Selection", seed 003 Fig. 3B): filter the
//! capacity table, score what is left, ration video servers, then pick. Each stage is a
//! plain function over rows and `now`, so every rule is tested in virtual time.

use super::{Server, ServerState, REPORT_FRESH};
use protocol::Capabilities;
use rand::Rng;
use std::time::Instant;

/// What a new conference asks of its server.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Capabilities the conference needs (see [`super::needs`]).
    pub need: Capabilities,
    /// The tenant pool it must run in; `None`: any server.
    pub pool: Option<&'a str>,
    /// Units its first participant costs: a server must have this much room to be
    /// preferred by the video rationing.
    pub units: u32,
    /// A server not to pick (the source of a punt).
    pub exclude: Option<&'a str>,
}

/// Why a server is not a candidate; the first rule that fails is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Draining, out, or in a maintenance window.
    NotInService(ServerState),
    /// No report for [`REPORT_FRESH`].
    Stale,
    /// Lacks a capability the conference needs.
    Incapable,
    /// In another tenant's pool.
    OtherPool,
    /// Excluded by the caller.
    Excluded,
}

/// Stage 1, filter: in service (not draining, out or in a maintenance window), a report
/// younger than [`REPORT_FRESH`], the capabilities, the tenant's pool.
pub fn filter(s: &Server, req: &Request, now: Instant, unix_s: u64) -> Result<(), Skip> {
    match s.state(now, unix_s) {
        ServerState::InService => {}
        other => return Err(Skip::NotInService(other)),
    }
    if now.saturating_duration_since(s.last_report) >= REPORT_FRESH {
        return Err(Skip::Stale);
    }
    if !s.caps.covers(&req.need) {
        return Err(Skip::Incapable);
    }
    if req.pool.is_some_and(|p| p != s.pool) {
        return Err(Skip::OtherPool);
    }
    if req.exclude == Some(s.id.as_str()) {
        return Err(Skip::Excluded);
    }
    Ok(())
}

/// Stage 2, score: unused capacity less the contracted reserve of its conferences and a
/// ramp-up charge, in capacity units, for each reservation the server has not reported
/// yet. The charge is what keeps a burst from herding onto the server whose last report
/// looked emptiest. `mean` is the mean conference size (see [`mean_size`]): young
/// conferences still smaller than that are charged for the users they will grow by, so
/// a server that just took many new conferences does not look empty.
pub fn score(s: &Server, mean: f64) -> i64 {
    s.score() - growth(s, mean)
}

/// Users a server's conferences will likely gain: the mean size times the conferences
/// it hosts, less the users it has and has coming. One user counts as one unit.
fn growth(s: &Server, mean: f64) -> i64 {
    let expected = (mean * f64::from(s.hosted)).round() as i64;
    let present = i64::from(s.users) + s.pending.len() as i64;
    (expected - present).max(0)
}

/// Users (joined and on their way) per hosted conference over `servers`; 0 with none.
pub fn mean_size(servers: &[&Server]) -> f64 {
    let (users, hosted) = servers.iter().fold((0u64, 0u64), |(u, h), s| {
        (
            u + u64::from(s.users) + s.pending.len() as u64,
            h + u64::from(s.hosted),
        )
    });
    if hosted == 0 {
        0.0
    } else {
        users as f64 / hosted as f64
    }
}

/// Stage 3, ration video: an audio-only conference goes to a server without video when
/// one has room, even if a video server has more unused capacity, so video servers stay
/// free for the conferences that need them.
pub fn ration<'a>(candidates: Vec<&'a Server>, req: &Request, mean: f64) -> Vec<&'a Server> {
    if req.need.video {
        return candidates;
    }
    let plain: Vec<&Server> = candidates
        .iter()
        .copied()
        .filter(|s| !s.caps.video && score(s, mean) >= i64::from(req.units))
        .collect();
    if plain.is_empty() {
        candidates
    } else {
        plain
    }
}

/// Stage 4, pick: the best score; a tie is broken by two random choices among the tied
/// servers, the one with fewer reservations in flight winning, so simultaneous
/// dispatchers (or a burst between reports) spread instead of all taking the first.
pub fn pick<'a>(candidates: &[&'a Server], mean: f64, rng: &mut impl Rng) -> Option<&'a Server> {
    let best = candidates.iter().map(|s| score(s, mean)).max()?;
    let tied: Vec<&Server> = candidates
        .iter()
        .copied()
        .filter(|s| score(s, mean) == best)
        .collect();
    if tied.len() == 1 {
        return tied.first().copied();
    }
    let i = rng.gen_range(0..tied.len());
    let mut j = rng.gen_range(0..tied.len() - 1);
    if j >= i {
        j += 1;
    }
    let (a, b) = (tied[i], tied[j]);
    Some(if b.pending.len() < a.pending.len() {
        b
    } else {
        a
    })
}

/// The whole pipeline over the capacity table: the server a new conference goes to.
pub fn choose<'a>(
    servers: impl Iterator<Item = &'a Server>,
    req: &Request,
    now: Instant,
    unix_s: u64,
    rng: &mut impl Rng,
) -> Option<&'a Server> {
    let candidates: Vec<&Server> = servers
        .filter(|s| filter(s, req, now, unix_s).is_ok())
        .collect();
    let mean = mean_size(&candidates);
    pick(&ration(candidates, req, mean), mean, rng)
}
