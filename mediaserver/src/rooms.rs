//! The control plane's view of the conferences this server hosts: who is in each, on
//! which worker it runs, and which clients the dispatcher said are on their way.

use protocol::{MediaKind, Mode, ServerMsg};
use std::collections::{BTreeMap, HashMap, HashSet};
use tokio::sync::mpsc::UnboundedSender;

/// A joined client.
pub struct Member {
    pub name: String,
    pub account: String,
    /// Lines to this member's control connection.
    pub tx: UnboundedSender<ServerMsg>,
}

/// One conference.
pub struct Room {
    pub conf: mesh::ConfId,
    pub worker: usize,
    pub mode: Mode,
    pub members: BTreeMap<u32, Member>,
    /// (user, expiry in Unix seconds) from `reserve`, until that user joins.
    pub reservations: Vec<(String, u64)>,
}

impl Room {
    /// Sends a line to every member but `except`.
    pub fn broadcast(&self, msg: &ServerMsg, except: Option<u32>) {
        for (id, m) in &self.members {
            if Some(*id) != except {
                let _ = m.tx.send(msg.clone());
            }
        }
    }

    /// No members and nobody on the way: the conference can go.
    pub fn is_idle(&self) -> bool {
        self.members.is_empty() && self.reservations.is_empty()
    }
}

/// All rooms of this server.
#[derive(Default)]
pub struct Rooms {
    pub rooms: HashMap<String, Room>,
    next_conf: mesh::ConfId,
    next_participant: u32,
    ssrcs: HashSet<u32>,
}

impl Rooms {
    pub fn next_conf(&mut self) -> mesh::ConfId {
        self.next_conf += 1;
        self.next_conf
    }

    pub fn next_participant(&mut self) -> u32 {
        self.next_participant += 1;
        self.next_participant
    }

    /// A fresh SSRC, unique on this server, so the sorter never confuses two senders.
    pub fn new_ssrc(&mut self) -> u32 {
        loop {
            let s: u32 = rand::random();
            if s != 0 && self.ssrcs.insert(s) {
                return s;
            }
        }
    }

    pub fn free_ssrc(&mut self, ssrc: u32) {
        self.ssrcs.remove(&ssrc);
    }

    pub fn users(&self) -> usize {
        self.rooms.values().map(|r| r.members.len()).sum()
    }

    /// Conferences per worker, to place a new one on the least loaded.
    pub fn load(&self, workers: usize) -> Vec<usize> {
        let mut load = vec![0; workers];
        for r in self.rooms.values() {
            if let Some(l) = load.get_mut(r.worker) {
                *l += 1;
            }
        }
        load
    }
}

/// Kinds this build offers on a `channel`.
pub fn offered(kind: MediaKind) -> bool {
    kind == MediaKind::Audio
}
