//! Join rate limits: token buckets per account and per client address (the
//! `join_rate_*` settings), checked before a join is placed so that a flood of joins costs
//! a reject line and nothing else. The buckets are sans-IO ([`control::Buckets`]); the
//! service passes the time.

use super::Service;
use crate::config::JoinRate;
use control::Buckets;
use protocol::{ErrorCode, ServerMsg};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The buckets of one dispatcher.
#[derive(Debug)]
pub(crate) struct JoinLimiter {
    accounts: Buckets<String>,
    ips: Buckets<IpAddr>,
}

impl JoinLimiter {
    pub(crate) fn new(rate: JoinRate) -> Self {
        JoinLimiter {
            accounts: Buckets::new(rate.per_account),
            ips: Buckets::new(rate.per_ip),
        }
    }

    /// Whether a join of `account` (a known one: unknown ones are rejected anyway and
    /// must not fill the table) from `ip` may go on at `now`; takes a token of both when
    /// it may, none when it may not.
    pub(crate) fn admit(
        &mut self,
        account: Option<&str>,
        ip: IpAddr,
        now: Instant,
    ) -> Result<(), (Duration, &'static str)> {
        self.ips
            .wait(&ip, now)
            .map_err(|w| (w, "too many joins from this address"))?;
        if let Some(a) = account {
            self.accounts
                .wait(&a.to_owned(), now)
                .map_err(|w| (w, "too many joins for this account"))?;
            self.accounts.take(&a.to_owned(), now);
        }
        self.ips.take(&ip, now);
        Ok(())
    }
}

impl Service {
    /// The join rate check of a client at `ip` joining with `account`: `Some(reject 431)`
    /// past a limit.
    pub(crate) fn admit_join(&self, account: &str, ip: IpAddr) -> Option<ServerMsg> {
        let known = self
            .settings()
            .accounts
            .iter()
            .any(|a| a.code == account)
            .then_some(account);
        let admitted = self
            .join_limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(known, ip, Instant::now());
        match admitted {
            Ok(()) => None,
            Err((wait, why)) => {
                // At least 1 ms: "retry after 0 ms" would invite a busy loop.
                let ms = wait.as_millis().max(1);
                tracing::debug!(%ip, account = %protocol::clip(account), ms, "join rate limited");
                Some(ServerMsg::reject(
                    ErrorCode::RateLimited,
                    format!("retry after {ms} ms: {why}"),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::Rate;

    #[test]
    fn per_address_and_per_account_limits_are_separate() {
        let t0 = Instant::now();
        let mut l = JoinLimiter::new(JoinRate {
            per_account: Rate {
                per_sec: 1.0,
                burst: 3,
            },
            per_ip: Rate {
                per_sec: 1.0,
                burst: 2,
            },
        });
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        l.admit(Some("demo"), a, t0).unwrap();
        l.admit(Some("demo"), a, t0).unwrap();
        let (wait, why) = l.admit(Some("demo"), a, t0).unwrap_err();
        assert!(why.contains("address"), "{why}");
        assert_eq!(wait, Duration::from_secs(1));
        // Another address: its own bucket, but the account has one join left.
        l.admit(Some("demo"), b, t0).unwrap();
        let (_, why) = l.admit(Some("demo"), b, t0).unwrap_err();
        assert!(why.contains("account"), "{why}");
        // A refused join took no token: after a second each has one again.
        let t1 = t0 + Duration::from_secs(1);
        l.admit(Some("demo"), b, t1).unwrap();
        // Unknown accounts are held to the address limit only.
        l.admit(None, b, t1 + Duration::from_secs(1)).unwrap();
    }
}
