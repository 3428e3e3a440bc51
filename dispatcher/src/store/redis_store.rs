//! The Redis store: the keys of [`super`] behind one auto-reconnecting connection. Every
//! read-modify-write is a Lua script, so it is atomic on the server and costs one round
//! trip.

use super::{MergeOrder, Orders, PuntOrder, PuntReply, Row, RowKind, StoreResult};
use crate::DispatcherError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use std::time::Duration;

/// Claim if absent, else return the holder (refreshing its TTL when it is us).
const CLAIM: &str = r"
local v = redis.call('GET', KEYS[1])
if v then
  if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
  return v
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]";

/// Compare-and-set from ARGV[1] (or nothing) to ARGV[2], refused while ARGV[1]'s
/// capacity row KEYS[2] exists: that server is alive, just not known to the caller yet.
const REPLACE: &str = r"
local v = redis.call('GET', KEYS[1])
if v and (v ~= ARGV[1] or redis.call('EXISTS', KEYS[2]) == 1) then return v end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return ARGV[2]";

/// Refreshes each KEYS[i] -> ARGV[i+1] unless another server holds it.
const KEEP: &str = r"
for i, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if (not v) or v == ARGV[i + 1] then redis.call('SET', k, ARGV[i + 1], 'PX', ARGV[1]) end
end
return #KEYS";

/// Deletes each KEYS[i] only if it still names ARGV[i].
const RELEASE: &str = r"
local n = 0
for i, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[i] then n = n + redis.call('DEL', k) end
end
return n";

/// Renews the lease if we hold it, takes it if nobody does.
const LEASE: &str = r"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0";

/// Drops index members whose row expired.
const HOUSEKEEP: &str = r"
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. id) == 0 then redis.call('SREM', KEYS[1], id) n = n + 1 end
end
return n";

const INDEX: &str = "noc:servers";
const ROW: &str = "noc:server:";
const ROSTER: &str = "noc:roster:";
/// Placements refreshed per script call, so one call never holds Redis for long.
const KEEP_CHUNK: usize = 256;

fn prefix(kind: RowKind) -> &'static str {
    match kind {
        RowKind::Capacity => ROW,
        RowKind::Roster => ROSTER,
    }
}
const LEASE_KEY: &str = "noc:lease";
/// Orders nobody takes (their dispatcher died) vanish after this.
const ORDER_TTL: Duration = Duration::from_secs(10);

fn conf_key(conference: &str) -> String {
    format!("noc:conf:{conference}")
}

fn orders_key(dispatcher: &str) -> String {
    format!("noc:orders:{dispatcher}")
}

fn punts_key(dispatcher: &str) -> String {
    format!("noc:punts:{dispatcher}")
}

fn reply_key(id: &str) -> String {
    format!("noc:reply:{id}")
}

fn err(e: redis::RedisError) -> DispatcherError {
    DispatcherError::Store(e.to_string())
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

pub struct RedisStore {
    con: ConnectionManager,
    claim: Script,
    replace: Script,
    keep: Script,
    release: Script,
    lease: Script,
    housekeep: Script,
}

impl RedisStore {
    /// Connects (and fails at start if Redis is not there); later outages are retried
    /// by the connection manager while each call fails fast.
    pub async fn connect(url: &str) -> StoreResult<RedisStore> {
        let client = redis::Client::open(url).map_err(err)?;
        // A join waits on the store: bound how long, so a hung Redis degrades placement
        // to the local tables instead of stalling clients.
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_millis(500)))
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let con = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(err)?;
        Ok(RedisStore {
            con,
            claim: Script::new(CLAIM),
            replace: Script::new(REPLACE),
            keep: Script::new(KEEP),
            release: Script::new(RELEASE),
            lease: Script::new(LEASE),
            housekeep: Script::new(HOUSEKEEP),
        })
    }

    fn con(&self) -> ConnectionManager {
        self.con.clone()
    }

    pub async fn claim(
        &self,
        conference: &str,
        server: &str,
        ttl: Duration,
    ) -> StoreResult<String> {
        self.claim
            .key(conf_key(conference))
            .arg(server)
            .arg(ms(ttl))
            .invoke_async(&mut self.con())
            .await
            .map_err(err)
    }

    pub async fn replace(
        &self,
        conference: &str,
        old: &str,
        new: &str,
        ttl: Duration,
    ) -> StoreResult<String> {
        self.replace
            .key(conf_key(conference))
            .key(format!("{ROW}{old}"))
            .arg(old)
            .arg(new)
            .arg(ms(ttl))
            .invoke_async(&mut self.con())
            .await
            .map_err(err)
    }

    pub async fn keep(&self, placed: &[(String, String)], ttl: Duration) -> StoreResult<()> {
        for chunk in placed.chunks(KEEP_CHUNK) {
            let mut inv = self.keep.prepare_invoke();
            inv.arg(ms(ttl));
            for (c, s) in chunk {
                inv.key(conf_key(c)).arg(s);
            }
            let _: i64 = inv.invoke_async(&mut self.con()).await.map_err(err)?;
        }
        Ok(())
    }

    pub async fn release(&self, released: &[(String, String)]) -> StoreResult<()> {
        for chunk in released.chunks(KEEP_CHUNK) {
            let mut inv = self.release.prepare_invoke();
            for (c, s) in chunk {
                inv.key(conf_key(c)).arg(s);
            }
            let _: i64 = inv.invoke_async(&mut self.con()).await.map_err(err)?;
        }
        Ok(())
    }

    /// The placements of `conferences`, in order (`None` where there is none).
    pub async fn placements(&self, conferences: &[String]) -> StoreResult<Vec<Option<String>>> {
        if conferences.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = conferences.iter().map(|c| conf_key(c)).collect();
        redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut self.con())
            .await
            .map_err(err)
    }

    pub async fn force(&self, conference: &str, server: &str, ttl: Duration) -> StoreResult<()> {
        redis::cmd("SET")
            .arg(conf_key(conference))
            .arg(server)
            .arg("PX")
            .arg(ms(ttl))
            .query_async::<()>(&mut self.con())
            .await
            .map_err(err)
    }

    pub async fn put_rows(
        &self,
        kind: RowKind,
        rows: &[Row],
        gone: &[String],
        ttl: Duration,
    ) -> StoreResult<()> {
        if rows.is_empty() && gone.is_empty() {
            return Ok(());
        }
        let mut p = redis::pipe();
        for r in rows {
            // A Row is plain data; serde_json cannot fail on it.
            let json = serde_json::to_string(r).unwrap_or_default();
            p.cmd("SET")
                .arg(format!("{}{}", prefix(kind), r.id))
                .arg(json)
                .arg("PX")
                .arg(ms(ttl))
                .ignore();
            p.cmd("SADD").arg(INDEX).arg(&r.id).ignore();
        }
        for id in gone {
            p.cmd("DEL").arg(format!("{ROW}{id}")).ignore();
            p.cmd("DEL").arg(format!("{ROSTER}{id}")).ignore();
            p.cmd("SREM").arg(INDEX).arg(id).ignore();
        }
        p.query_async::<()>(&mut self.con()).await.map_err(err)
    }

    pub async fn rows(&self, kind: RowKind) -> StoreResult<Vec<Row>> {
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(INDEX)
            .query_async(&mut self.con())
            .await
            .map_err(err)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids
            .iter()
            .map(|id| format!("{}{id}", prefix(kind)))
            .collect();
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut self.con())
            .await
            .map_err(err)?;
        Ok(values
            .into_iter()
            .flatten()
            .filter_map(|v| match serde_json::from_str::<Row>(&v) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable capacity row in the store ignored");
                    None
                }
            })
            .collect())
    }

    pub async fn lease(&self, id: &str, ttl: Duration) -> StoreResult<bool> {
        let held: i64 = self
            .lease
            .key(LEASE_KEY)
            .arg(id)
            .arg(ms(ttl))
            .invoke_async(&mut self.con())
            .await
            .map_err(err)?;
        Ok(held == 1)
    }

    pub async fn push_order(&self, order: &MergeOrder) -> StoreResult<()> {
        // Plain data; serde_json cannot fail on it.
        let json = serde_json::to_string(order).unwrap_or_default();
        self.push(orders_key(&order.dispatcher), json).await
    }

    pub async fn push_punt(&self, order: &PuntOrder) -> StoreResult<()> {
        let json = serde_json::to_string(order).unwrap_or_default();
        self.push(punts_key(&order.dispatcher), json).await
    }

    /// Appends to a queue that vanishes [`ORDER_TTL`] after its last order.
    async fn push(&self, key: String, json: String) -> StoreResult<()> {
        redis::pipe()
            .cmd("RPUSH")
            .arg(&key)
            .arg(json)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ms(ORDER_TTL))
            .ignore()
            .query_async::<()>(&mut self.con())
            .await
            .map_err(err)
    }

    pub async fn take_orders(&self, me: &str) -> StoreResult<Orders> {
        let (merges, punts) = (orders_key(me), punts_key(me));
        let (merges, _, punts, _): (Vec<String>, i64, Vec<String>, i64) = redis::pipe()
            .atomic()
            .cmd("LRANGE")
            .arg(&merges)
            .arg(0)
            .arg(-1)
            .cmd("DEL")
            .arg(&merges)
            .cmd("LRANGE")
            .arg(&punts)
            .arg(0)
            .arg(-1)
            .cmd("DEL")
            .arg(&punts)
            .query_async(&mut self.con())
            .await
            .map_err(err)?;
        Ok(Orders {
            merges: merges
                .iter()
                .filter_map(|s| serde_json::from_str(s).ok())
                .collect(),
            punts: punts
                .iter()
                .filter_map(|s| serde_json::from_str(s).ok())
                .collect(),
        })
    }

    pub async fn put_reply(&self, id: &str, reply: &PuntReply, ttl: Duration) -> StoreResult<()> {
        let json = serde_json::to_string(reply).unwrap_or_default();
        redis::cmd("SET")
            .arg(reply_key(id))
            .arg(json)
            .arg("PX")
            .arg(ms(ttl))
            .query_async::<()>(&mut self.con())
            .await
            .map_err(err)
    }

    pub async fn reply(&self, id: &str) -> StoreResult<Option<PuntReply>> {
        let v: Option<String> = redis::cmd("GET")
            .arg(reply_key(id))
            .query_async(&mut self.con())
            .await
            .map_err(err)?;
        Ok(v.and_then(|s| serde_json::from_str(&s).ok()))
    }

    pub async fn housekeep(&self) -> StoreResult<usize> {
        let n: i64 = self
            .housekeep
            .key(INDEX)
            .arg(ROW)
            .invoke_async(&mut self.con())
            .await
            .map_err(err)?;
        Ok(n.max(0) as usize)
    }
}
