//! The limits of a listener and the timeouts of its connections, as operators set them.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The flags (and TOML keys, and `NOC_*` variables) that set a server's [`Limits`]; every
/// server binary flattens this into its own settings, so they are defined once.
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Serialize, Deserialize)]
pub struct LimitArgs {
    /// Control connections open at once per listener [default: 16384].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Control connections open at once from one IP per listener [default: 4096].
    #[arg(long)]
    pub max_connections_per_ip: Option<usize>,
    /// Seconds a new control connection has to send `join` or `register` [default: 10].
    #[arg(long)]
    pub handshake_timeout: Option<f64>,
    /// Seconds a joined control connection may stay silent (clients ping within it)
    /// [default: 30].
    #[arg(long)]
    pub idle_timeout: Option<f64>,
    /// Lines queued for one peer before it is disconnected as not reading [default: 2048;
    /// an SDP answer alone may be 1,024 lines, sent at once].
    #[arg(long)]
    pub outbox_lines: Option<usize>,
    /// Seconds one write to a peer may take before it is disconnected [default: 10].
    #[arg(long)]
    pub write_timeout: Option<f64>,
}

impl LimitArgs {
    /// The limits these settings give, over the defaults, checked.
    pub fn resolve(&self) -> Result<Limits, String> {
        let d = Limits::default();
        let l = Limits {
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            max_connections_per_ip: self
                .max_connections_per_ip
                .unwrap_or(d.max_connections_per_ip),
            handshake_timeout: self.handshake_timeout.unwrap_or(d.handshake_timeout),
            idle_timeout: self.idle_timeout.unwrap_or(d.idle_timeout),
            outbox_lines: self.outbox_lines.unwrap_or(d.outbox_lines),
            write_timeout: self.write_timeout.unwrap_or(d.write_timeout),
        };
        l.check()?;
        Ok(l)
    }
}

/// A listener's limits (set through [`LimitArgs`]). Durations are in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Connections open at once on one listener; past it a new one gets an `error` line
    /// and is closed.
    pub max_connections: usize,
    /// Connections open at once from one IP address on one listener.
    pub max_connections_per_ip: usize,
    /// Seconds a new connection may take to send `join` (or `register`).
    pub handshake_timeout: f64,
    /// Seconds a joined connection may stay silent; clients send `ping` well within it
    /// (confclient: every second).
    pub idle_timeout: f64,
    /// Lines queued for one peer; a peer that lets this many pile up is disconnected.
    pub outbox_lines: usize,
    /// Seconds one write to a peer may take before it is disconnected.
    pub write_timeout: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 16_384,
            max_connections_per_ip: 4_096,
            handshake_timeout: 10.0,
            idle_timeout: 30.0,
            // Room for a whole SDP answer (up to MAX_SDP_LINES, 1,024) and the lines
            // around it: a browser with many receive slots gets one of 600 lines or more.
            outbox_lines: 2048,
            write_timeout: 10.0,
        }
    }
}

impl Limits {
    /// Checks the values; the message names the key.
    pub fn check(&self) -> Result<(), String> {
        let secs = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 && v < 1e9 {
                Ok(())
            } else {
                Err(format!("`{name}` must be a number of seconds > 0, got {v}"))
            }
        };
        secs("handshake_timeout", self.handshake_timeout)?;
        secs("idle_timeout", self.idle_timeout)?;
        secs("write_timeout", self.write_timeout)?;
        for (name, v) in [
            ("max_connections", self.max_connections),
            ("max_connections_per_ip", self.max_connections_per_ip),
            ("outbox_lines", self.outbox_lines),
        ] {
            if v == 0 {
                return Err(format!("`{name}` must be at least 1"));
            }
        }
        Ok(())
    }

    /// The per-connection part, for a server's sessions.
    pub fn link(&self) -> LinkConfig {
        let d = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(Duration::from_secs(10));
        LinkConfig {
            handshake_timeout: Some(d(self.handshake_timeout)),
            idle_timeout: Some(d(self.idle_timeout)),
            outbox_lines: self.outbox_lines,
            write_timeout: d(self.write_timeout),
        }
    }
}

/// How one connection behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkConfig {
    /// Until the session calls [`crate::Incoming::handshake_done`]; `None`: no limit.
    pub handshake_timeout: Option<Duration>,
    /// After the handshake, the longest silence; `None`: no limit.
    pub idle_timeout: Option<Duration>,
    pub outbox_lines: usize,
    pub write_timeout: Duration,
}

impl LinkConfig {
    /// A client's side: no timeouts on what the server says (the join flow watches the
    /// server's silence itself), a generous outbox.
    pub fn client() -> Self {
        LinkConfig {
            handshake_timeout: None,
            idle_timeout: None,
            outbox_lines: 1024,
            write_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for LinkConfig {
    fn default() -> Self {
        Limits::default().link()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_check_and_bad_values_are_named() {
        Limits::default().check().unwrap();
        let bad = Limits {
            handshake_timeout: 0.0,
            ..Limits::default()
        };
        assert!(bad.check().unwrap_err().contains("handshake_timeout"));
        let bad = Limits {
            max_connections_per_ip: 0,
            ..Limits::default()
        };
        assert!(bad.check().unwrap_err().contains("max_connections_per_ip"));
        let l = Limits {
            handshake_timeout: 2.5,
            ..Limits::default()
        };
        assert_eq!(
            l.link().handshake_timeout,
            Some(Duration::from_millis(2500))
        );
    }
}
