//! The control plane's view of the conferences this server hosts: who is in each, on
//! which worker it runs, and which clients the dispatcher said are on their way.

use protocol::{MediaKind, Mode, Quality, ServerMsg};
use std::collections::{BTreeMap, HashMap, HashSet};
use tokio::sync::mpsc::UnboundedSender;

/// A joined client.
pub struct Member {
    pub name: String,
    pub account: String,
    /// Lines to this member's control connection.
    pub tx: UnboundedSender<ServerMsg>,
    /// Joined with `media=audio,video`: charged at the video rate.
    pub video: bool,
}

/// One conference.
pub struct Room {
    pub conf: mesh::ConfId,
    pub worker: usize,
    pub mode: Mode,
    pub members: BTreeMap<u32, Member>,
    /// (user, ticket expiry in Unix seconds) from `reserve`, until that user joins.
    pub reservations: Vec<(String, u64)>,
    /// Joins whose `reserve` has not arrived yet: the registry link can be slower than
    /// the client. The late `reserve` is matched here instead of lingering.
    pub early_joins: Vec<(String, u64)>,
    /// The last `quality` light sent for each member (mix conferences).
    pub quality: HashMap<u32, Quality>,
}

impl Room {
    /// Capacity units this room's members use.
    pub fn units(&self, cost: &protocol::CostModel) -> u64 {
        self.members
            .values()
            .map(|m| u64::from(cost.per_participant(self.mode, m.video)))
            .sum()
    }

    /// A `reserve` from the dispatcher: the user is on the way, unless already here.
    pub fn reserve(&mut self, user: String, expires: u64) {
        let key = (user, expires);
        match self.early_joins.iter().position(|j| *j == key) {
            Some(i) => {
                self.early_joins.swap_remove(i);
            }
            None => self.reservations.push(key),
        }
    }

    /// A join with a ticket: settles its reservation, or remembers it came first.
    pub fn arrived(&mut self, user: &str, expires: u64) {
        match self
            .reservations
            .iter()
            .position(|(u, e)| u == user && *e == expires)
        {
            Some(i) => {
                self.reservations.swap_remove(i);
            }
            None => self.early_joins.push((user.to_owned(), expires)),
        }
    }

    /// Forgets reservations and early joins whose tickets have expired.
    pub fn expire(&mut self, unix_now: u64) {
        self.reservations.retain(|(_, exp)| *exp >= unix_now);
        self.early_joins.retain(|(_, exp)| *exp >= unix_now);
    }

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

/// Turns a worker's mesh event into control lines: `speaking` to every member when a talk
/// run starts or stops, `quality` to every member when a member's light changes.
pub(crate) fn on_mesh_event(server: &crate::Server, worker: usize, ev: mesh::Event) {
    let mut rooms = server.rooms();
    let find = |conf: mesh::ConfId| move |r: &&mut Room| r.worker == worker && r.conf == conf;
    match ev {
        mesh::Event::Speaking {
            conf,
            participant,
            on,
        } => {
            if let Some(room) = rooms.rooms.values_mut().find(find(conf)) {
                room.broadcast(&ServerMsg::Speaking { participant, on }, None);
            }
        }
        mesh::Event::Quality {
            conf,
            participant,
            loss_permille,
            jitter_ms,
        } => {
            let Some(room) = rooms.rooms.values_mut().find(find(conf)) else {
                return;
            };
            if !room.members.contains_key(&participant) {
                return;
            }
            let q =
                Quality::from_loss_jitter(f64::from(loss_permille) / 10.0, f64::from(jitter_ms));
            if room.quality.insert(participant, q) != Some(q) {
                room.broadcast(
                    &ServerMsg::Quality {
                        participant,
                        quality: q,
                    },
                    None,
                );
            }
        }
        ev => tracing::info!(worker, event = ?ev, "mesh event"),
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

    /// Takes an SSRC a client chose (an external sender's); false if it is 0 or taken.
    pub fn claim_ssrc(&mut self, ssrc: u32) -> bool {
        ssrc != 0 && self.ssrcs.insert(ssrc)
    }

    pub fn free_ssrc(&mut self, ssrc: u32) {
        self.ssrcs.remove(&ssrc);
    }

    /// Capacity units the members of every room use, by the shared cost model.
    pub fn units(&self, cost: &protocol::CostModel) -> u64 {
        self.rooms.values().map(|r| r.units(cost)).sum()
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

/// Kinds this build offers on a `channel`: audio always, video (H.264 or VP8, forwarded
/// by the reflector in both modes) to a client that joined with `media=audio,video`.
pub fn offered(kind: MediaKind) -> bool {
    matches!(kind, MediaKind::Audio | MediaKind::Video)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> Room {
        Room {
            conf: 1,
            worker: 0,
            mode: Mode::Reflect,
            members: BTreeMap::new(),
            reservations: Vec::new(),
            early_joins: Vec::new(),
            quality: HashMap::new(),
        }
    }

    #[test]
    fn reserve_then_join_settles() {
        let mut r = room();
        r.reserve("ann".into(), 100);
        assert!(!r.is_idle());
        r.arrived("ann", 100);
        assert!(r.is_idle());
    }

    #[test]
    fn join_before_its_reserve_does_not_leave_a_reservation() {
        let mut r = room();
        r.arrived("ann", 100);
        r.reserve("ann".into(), 100);
        assert!(r.is_idle());
        assert!(r.early_joins.is_empty());
    }

    #[test]
    fn unmatched_reservations_expire() {
        let mut r = room();
        r.reserve("ann".into(), 100);
        r.arrived("bob", 100);
        r.expire(100);
        assert!(!r.is_idle());
        r.expire(101);
        assert!(r.is_idle());
        assert!(r.early_joins.is_empty());
    }
}
