//! Admission of connections to one listener (a connection limit and a per-IP limit), and
//! the counts of what was refused and closed, by reason.

use crate::Limits;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefuseReason {
    /// The listener has `max_connections` open.
    MaxConnections,
    /// The peer's IP has `max_connections_per_ip` open.
    PerIp,
    /// The server is shutting down.
    Shutdown,
}

impl RefuseReason {
    pub const ALL: [RefuseReason; 3] = [
        RefuseReason::MaxConnections,
        RefuseReason::PerIp,
        RefuseReason::Shutdown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefuseReason::MaxConnections => "max-connections",
            RefuseReason::PerIp => "per-ip",
            RefuseReason::Shutdown => "shutdown",
        }
    }

    /// The text of the `error` line the peer gets.
    pub fn text(self) -> &'static str {
        match self {
            RefuseReason::MaxConnections => "too many connections to this server; try later",
            RefuseReason::PerIp => "too many connections from your address",
            RefuseReason::Shutdown => "server shutting down",
        }
    }
}

/// Why an admitted connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The peer closed it (end of stream, reset, WebSocket close).
    Peer,
    /// The server ended it after its last line: `endsession`, a refused join, a kick.
    Done,
    /// No `join`/`register` within the handshake timeout.
    HandshakeTimeout,
    /// Nothing from the peer within the idle timeout.
    IdleTimeout,
    /// The peer did not read and its bounded outbox filled.
    OutboxFull,
    /// One write to the peer took longer than the write timeout.
    WriteTimeout,
    /// A line the framing or the protocol refused.
    BadLine,
    /// The server is shutting down.
    Shutdown,
    /// The TLS handshake failed, or the peer spoke plain text to a TLS port.
    Tls,
}

impl CloseReason {
    pub const ALL: [CloseReason; 9] = [
        CloseReason::Peer,
        CloseReason::Done,
        CloseReason::HandshakeTimeout,
        CloseReason::IdleTimeout,
        CloseReason::OutboxFull,
        CloseReason::WriteTimeout,
        CloseReason::BadLine,
        CloseReason::Shutdown,
        CloseReason::Tls,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Peer => "peer",
            CloseReason::Done => "done",
            CloseReason::HandshakeTimeout => "handshake-timeout",
            CloseReason::IdleTimeout => "idle-timeout",
            CloseReason::OutboxFull => "outbox-full",
            CloseReason::WriteTimeout => "write-timeout",
            CloseReason::BadLine => "bad-line",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Tls => "tls",
        }
    }

    fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|r| *r == self)
            .expect("every reason is in ALL")
    }
}

/// Counters of one listener.
#[derive(Debug, Default)]
pub struct GateStats {
    pub accepted: AtomicU64,
    /// Connections open now.
    pub open: AtomicI64,
    refused: [AtomicU64; RefuseReason::ALL.len()],
    closed: [AtomicU64; CloseReason::ALL.len()],
}

impl GateStats {
    pub fn refused(&self, r: RefuseReason) -> u64 {
        let i = RefuseReason::ALL.iter().position(|x| *x == r).unwrap_or(0);
        self.refused[i].load(Ordering::Relaxed)
    }

    pub fn closed(&self, r: CloseReason) -> u64 {
        self.closed[r.index()].load(Ordering::Relaxed)
    }

    pub(crate) fn count_close(&self, r: CloseReason) {
        self.closed[r.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// Admission to one listener. Shared by its accept loop (TCP) and its WebSocket route:
/// both kinds of connection count against the same limits.
#[derive(Debug)]
pub struct Gate {
    name: &'static str,
    limits: Limits,
    stats: GateStats,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl Gate {
    /// A gate for the listener `name` (a metrics label: `clients`, `registry`, ...).
    pub fn new(name: &'static str, limits: Limits) -> Arc<Gate> {
        Arc::new(Gate {
            name,
            limits,
            stats: GateStats::default(),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn stats(&self) -> &GateStats {
        &self.stats
    }

    /// Admits a connection from `ip`, or says why not (and counts it).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, RefuseReason> {
        // Accepts are rare next to packets; one short lock per accept.
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let refuse =
            if self.stats.open.load(Ordering::Relaxed) as usize >= self.limits.max_connections {
                Some(RefuseReason::MaxConnections)
            } else if per_ip.get(&ip).copied().unwrap_or(0) >= self.limits.max_connections_per_ip {
                Some(RefuseReason::PerIp)
            } else {
                None
            };
        if let Some(r) = refuse {
            drop(per_ip);
            self.refuse(r);
            return Err(r);
        }
        *per_ip.entry(ip).or_insert(0) += 1;
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(Permit {
            gate: self.clone(),
            ip,
        })
    }

    /// Counts a refusal decided outside [`Gate::admit`] (shutdown).
    pub fn refuse(&self, r: RefuseReason) {
        let i = RefuseReason::ALL.iter().position(|x| *x == r).unwrap_or(0);
        self.stats.refused[i].fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            listener = self.name,
            reason = r.as_str(),
            "connection refused"
        );
    }
}

/// An admitted connection's place at its gate; given back when the connection ends.
#[derive(Debug)]
pub struct Permit {
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl Permit {
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut per_ip = self.gate.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        self.gate.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_total_and_per_ip() {
        let g = Gate::new(
            "t",
            Limits {
                max_connections: 3,
                max_connections_per_ip: 2,
                ..Limits::default()
            },
        );
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let p1 = g.admit(a).unwrap();
        let _p2 = g.admit(a).unwrap();
        assert_eq!(g.admit(a).unwrap_err(), RefuseReason::PerIp);
        let _p3 = g.admit(b).unwrap();
        assert_eq!(g.admit(b).unwrap_err(), RefuseReason::MaxConnections);
        drop(p1);
        assert!(g.admit(a).is_ok());
        assert_eq!(g.stats().refused(RefuseReason::PerIp), 1);
        assert_eq!(g.stats().refused(RefuseReason::MaxConnections), 1);
        assert_eq!(g.stats().accepted.load(Ordering::Relaxed), 4);
    }
}
