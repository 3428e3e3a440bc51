//! Several dispatchers on one store (issue 6, "Several dispatchers").
//!
//! Every dispatcher serves client joins, but a media server links to only one of them.
//! The store is where they meet:
//!
//! - `noc:conf:NAME` -> server id: the conference's placement, claimed with `SET NX`
//!   semantics so two dispatchers taking the first joins of one conference agree;
//! - `noc:server:ID` -> a [`Row`]: a capacity-table row written by the dispatcher the
//!   server is linked to, with a short TTL, merged by every other dispatcher;
//! - `noc:roster:ID` -> the same row with the server's roster (conference ->
//!   participants), written once a second for call resolution: the roster grows with the
//!   conferences, so it stays off the fast beat;
//! - `noc:lease` -> dispatcher id: who does the singleton duties (call resolution,
//!   key housekeeping);
//! - `noc:orders:DISPATCHER` -> [`MergeOrder`]s the active dispatcher hands to the
//!   dispatcher linked to a server that must give a conference up;
//! - `noc:punts:DISPATCHER` -> [`PuntOrder`]s: an operator's punt made at a dispatcher
//!   the conference's server is not linked to, for the one it is linked to, which answers
//!   in `noc:reply:ID` ([`PuntReply`]).
//!
//! The store is an enum rather than a trait object: there are exactly two, and the
//! memory one doubles as the executable model of the Redis one in unit tests.

mod cluster;
pub mod lease;
pub mod memory;
mod redis_store;
pub mod resolve;

pub(crate) use cluster::Cluster;

use protocol::Capabilities;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a conference placement lives in the store without being refreshed.
pub const CONF_TTL: Duration = Duration::from_secs(10);
/// How long a capacity row lives without a new report (a report comes every second).
pub const ROW_TTL: Duration = Duration::from_secs(3);
/// How long the answer to a punt order is kept for the dispatcher that asked.
pub const REPLY_TTL: Duration = Duration::from_secs(10);
/// How long the lease is granted for; renewed every third of it.
pub const LEASE_TTL: Duration = Duration::from_millis(1500);

/// Where the dispatcher keeps what several dispatchers share: `memory` (one dispatcher)
/// or `redis://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum StoreUrl {
    #[default]
    Memory,
    Redis(String),
}

impl std::str::FromStr for StoreUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "memory" {
            Ok(StoreUrl::Memory)
        } else if s.starts_with("redis://") {
            Ok(StoreUrl::Redis(s.to_owned()))
        } else {
            Err(format!("store {s:?}: want `memory` or `redis://HOST:PORT`"))
        }
    }
}

impl Serialize for StoreUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl TryFrom<String> for StoreUrl {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Memory => f.write_str("memory"),
            StoreUrl::Redis(u) => f.write_str(u),
        }
    }
}

/// A capacity-table row as the dispatcher linked to the server publishes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub id: String,
    pub client_addr: SocketAddr,
    /// The server's WebSocket URL, if it announced one.
    #[serde(default)]
    pub ws_url: Option<String>,
    /// Capabilities as a comma list (`audio,reflect,mix`).
    pub caps: String,
    pub total: u32,
    pub unused: u32,
    pub conferences: u32,
    pub users: u32,
    pub cpu_pct: f32,
    pub pps: u64,
    pub loss_pct: f32,
    /// Unix ms of the server's last report, so readers can age it.
    pub reported_unix_ms: u64,
    pub draining: bool,
    pub maintenance: Option<(u64, u64)>,
    /// The dispatcher the server is linked to (where merge orders for it go).
    pub dispatcher: String,
    /// Conference -> participants on this server, for call resolution; only in
    /// [`RowKind::Roster`] rows.
    #[serde(default)]
    pub roster: BTreeMap<String, u32>,
}

/// Which of a server's two published rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// The capacity row, every 250 ms, without the roster.
    Capacity,
    /// The row with the roster, once a second.
    Roster,
}

impl Row {
    /// The row's capabilities; an unreadable list reads as none, so the server is never
    /// chosen rather than chosen for something it cannot do.
    pub fn capabilities(&self) -> Capabilities {
        if self.caps.is_empty() {
            return Capabilities::default();
        }
        Capabilities::parse_list("row", &self.caps).unwrap_or_default()
    }
}

/// The active dispatcher's decision that `conference` leaves `from` for `to`; carried
/// out by `dispatcher`, the one `from` is linked to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeOrder {
    pub conference: String,
    pub from: String,
    pub to: String,
    pub dispatcher: String,
}

/// An operator's punt of `conference`, asked at a dispatcher its server is not linked
/// to; carried out by `dispatcher`, the one `server` is linked to, which answers with a
/// [`PuntReply`] under `reply`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PuntOrder {
    pub conference: String,
    /// Where the asking dispatcher saw the conference: a punt of it from elsewhere would
    /// not be what the operator asked for.
    pub server: String,
    pub dispatcher: String,
    /// The operator, for the event log.
    pub by: String,
    /// Where the answer goes: `noc:reply:REPLY`.
    pub reply: String,
    /// Unix ms after which the asking dispatcher has stopped waiting (and told the
    /// operator it was not done): a late order is dropped, never carried out by surprise.
    pub expires_unix_ms: u64,
}

/// What became of a [`PuntOrder`], as the operator is answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PuntReply {
    /// The HTTP status: 200 when carried out, else the admin API's for the refusal.
    pub status: u16,
    pub from: String,
    pub to: String,
    /// Participants sent a `dispatch`.
    pub dispatched: usize,
    /// Why not, when `status` is not 200.
    pub error: String,
}

/// The orders queued for one dispatcher.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Orders {
    pub merges: Vec<MergeOrder>,
    pub punts: Vec<PuntOrder>,
}

/// The store itself.
pub enum Store {
    Memory(memory::MemoryStore),
    /// Boxed: the connection and its scripts are large, and there is one store.
    Redis(Box<redis_store::RedisStore>),
}

/// A store operation that failed (Redis down or answering nonsense). The caller degrades:
/// a join is then placed from the local tables alone.
pub type StoreResult<T> = Result<T, crate::DispatcherError>;

impl Store {
    /// Opens the store the URL names.
    pub async fn open(url: &StoreUrl) -> StoreResult<Store> {
        Ok(match url {
            StoreUrl::Memory => Store::Memory(memory::MemoryStore::default()),
            StoreUrl::Redis(u) => {
                Store::Redis(Box::new(redis_store::RedisStore::connect(u).await?))
            }
        })
    }

    /// Whether other dispatchers may share this store (rows are only worth writing then).
    pub fn shared(&self) -> bool {
        matches!(self, Store::Redis(_))
    }

    /// Claims `conference` for `server` unless someone already has: returns the winner.
    pub async fn claim(&self, conference: &str, server: &str) -> StoreResult<String> {
        match self {
            Store::Memory(m) => Ok(m.claim(Instant::now(), conference, server, CONF_TTL)),
            Store::Redis(r) => r.claim(conference, server, CONF_TTL).await,
        }
    }

    /// Moves `conference` from `old` (a server that is gone) to `new`, unless someone
    /// already moved it or `old` still has a capacity row (it is alive, only not known
    /// here yet): returns the winner.
    pub async fn replace(&self, conference: &str, old: &str, new: &str) -> StoreResult<String> {
        match self {
            Store::Memory(m) => Ok(m.replace(Instant::now(), conference, old, new, CONF_TTL)),
            Store::Redis(r) => r.replace(conference, old, new, CONF_TTL).await,
        }
    }

    /// Refreshes the TTL of placements still running where they were claimed.
    pub async fn keep(&self, placed: &[(String, String)]) -> StoreResult<()> {
        match self {
            Store::Memory(m) => {
                for (c, s) in placed {
                    m.claim(Instant::now(), c, s, CONF_TTL);
                }
                Ok(())
            }
            Store::Redis(r) => r.keep(placed, CONF_TTL).await,
        }
    }

    /// Forgets each `(conference, server)` placement still naming that server, in one
    /// round trip.
    pub async fn release(&self, released: &[(String, String)]) -> StoreResult<()> {
        match self {
            Store::Memory(m) => {
                for (c, s) in released {
                    m.release(Instant::now(), c, s);
                }
                Ok(())
            }
            Store::Redis(r) => r.release(released).await,
        }
    }

    /// The placements of `conferences`, in order (for call resolution).
    pub async fn placements(&self, conferences: &[String]) -> StoreResult<Vec<Option<String>>> {
        match self {
            Store::Memory(m) => Ok(conferences
                .iter()
                .map(|c| m.placed(Instant::now(), c))
                .collect()),
            Store::Redis(r) => r.placements(conferences).await,
        }
    }

    /// Sets `conference` to `server` whatever it was (after call resolution).
    pub async fn force(&self, conference: &str, server: &str) -> StoreResult<()> {
        match self {
            Store::Memory(m) => {
                m.force(Instant::now(), conference, server, CONF_TTL);
                Ok(())
            }
            Store::Redis(r) => r.force(conference, server, CONF_TTL).await,
        }
    }

    /// Publishes the rows of the servers linked here, and removes both rows of servers
    /// lost.
    pub async fn put_rows(&self, kind: RowKind, rows: &[Row], gone: &[String]) -> StoreResult<()> {
        match self {
            Store::Memory(m) => {
                m.put_rows(Instant::now(), kind, rows, gone, ROW_TTL);
                Ok(())
            }
            Store::Redis(r) => r.put_rows(kind, rows, gone, ROW_TTL).await,
        }
    }

    /// Every live row of `kind`, whoever wrote it.
    pub async fn rows(&self, kind: RowKind) -> StoreResult<Vec<Row>> {
        match self {
            Store::Memory(m) => Ok(m.rows(Instant::now(), kind)),
            Store::Redis(r) => r.rows(kind).await,
        }
    }

    /// Takes or renews the lease for `id`: true while `id` holds it.
    pub async fn lease(&self, id: &str) -> StoreResult<bool> {
        match self {
            Store::Memory(m) => Ok(m.lease(Instant::now(), id, LEASE_TTL)),
            Store::Redis(r) => r.lease(id, LEASE_TTL).await,
        }
    }

    /// Queues a merge order for the dispatcher that must carry it out.
    pub async fn push_order(&self, order: &MergeOrder) -> StoreResult<()> {
        match self {
            Store::Memory(m) => {
                m.push_order(order);
                Ok(())
            }
            Store::Redis(r) => r.push_order(order).await,
        }
    }

    /// Queues an operator's punt for the dispatcher the conference's server is linked to.
    pub async fn push_punt(&self, order: &PuntOrder) -> StoreResult<()> {
        match self {
            Store::Memory(m) => {
                m.push_punt(order);
                Ok(())
            }
            Store::Redis(r) => r.push_punt(order).await,
        }
    }

    /// Takes the merge and punt orders queued for dispatcher `me`, in one round trip.
    pub async fn take_orders(&self, me: &str) -> StoreResult<Orders> {
        match self {
            Store::Memory(m) => Ok(Orders {
                merges: m.take_orders(me),
                punts: m.take_punts(me),
            }),
            Store::Redis(r) => r.take_orders(me).await,
        }
    }

    /// Answers a punt order (kept [`REPLY_TTL`] for the asking dispatcher to read).
    pub async fn put_reply(&self, id: &str, reply: &PuntReply) -> StoreResult<()> {
        match self {
            Store::Memory(m) => {
                m.put_reply(Instant::now(), id, reply, REPLY_TTL);
                Ok(())
            }
            Store::Redis(r) => r.put_reply(id, reply, REPLY_TTL).await,
        }
    }

    /// The answer to punt order `id`, once there is one.
    pub async fn reply(&self, id: &str) -> StoreResult<Option<PuntReply>> {
        match self {
            Store::Memory(m) => Ok(m.reply(Instant::now(), id)),
            Store::Redis(r) => r.reply(id).await,
        }
    }

    /// Key housekeeping (the active dispatcher's duty): drops index entries of rows that
    /// expired. Returns how many it dropped.
    pub async fn housekeep(&self) -> StoreResult<usize> {
        match self {
            Store::Memory(m) => Ok(m.housekeep(Instant::now())),
            Store::Redis(r) => r.housekeep().await,
        }
    }
}

#[cfg(test)]
mod tests;
