//! What this dispatcher knows beyond its tables about the other dispatchers: the rosters
//! of the servers linked here, which servers are remote, and the placement changes queued
//! for the store. The service's store loop (`crate::service`) reads and drains it.

use super::Store;
use protocol::MsMsg;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

/// One participant on a server linked here: name and account, for merge orders.
type Roster = HashMap<String, BTreeMap<u32, (String, String)>>;

/// What this dispatcher knows beyond its tables about the other dispatchers.
pub(crate) struct Cluster {
    pub store: Store,
    /// Rosters of the servers linked here: server -> conference -> participants.
    rosters: Mutex<HashMap<String, Roster>>,
    /// Servers in the capacity table because another dispatcher published their rows.
    remote: Mutex<HashSet<String>>,
    /// Rows to delete: servers whose link here closed.
    gone: Mutex<Vec<String>>,
    /// Placements to release: conferences deleted on servers linked here.
    released: Mutex<Vec<(String, String)>>,
    /// Placements to set whatever they were: conferences punted from servers linked here.
    forced: Mutex<Vec<(String, String)>>,
    active: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section below is a plain collection update.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cluster {
    pub fn new(store: Store) -> Cluster {
        Cluster {
            store,
            rosters: Mutex::default(),
            remote: Mutex::default(),
            gone: Mutex::default(),
            released: Mutex::default(),
            forced: Mutex::default(),
            active: AtomicBool::new(false),
        }
    }

    /// Whether this dispatcher holds the lease now.
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Whether `server` is in the capacity table through another dispatcher's row.
    pub fn is_remote(&self, server: &str) -> bool {
        lock(&self.remote).contains(server)
    }

    /// Follows a registry line of a server linked here (before the tables apply it).
    pub fn observe(&self, server: &str, msg: &MsMsg) {
        match msg {
            MsMsg::UserJoined {
                conference,
                participant,
                name,
                account,
            } => {
                lock(&self.rosters)
                    .entry(server.to_owned())
                    .or_default()
                    .entry(conference.clone())
                    .or_default()
                    .insert(*participant, (name.clone(), account.clone()));
            }
            MsMsg::Member(m) => {
                lock(&self.rosters)
                    .entry(server.to_owned())
                    .or_default()
                    .entry(m.conference.clone())
                    .or_default()
                    .insert(m.participant, (m.name.clone(), m.account.clone()));
            }
            MsMsg::UserLeft {
                conference,
                participant,
                ..
            } => {
                if let Some(c) = lock(&self.rosters)
                    .get_mut(server)
                    .and_then(|r| r.get_mut(conference))
                {
                    c.remove(participant);
                }
            }
            MsMsg::ConfDeleted { conference } => {
                if let Some(r) = lock(&self.rosters).get_mut(server) {
                    r.remove(conference);
                }
                lock(&self.released).push((conference.clone(), server.to_owned()));
            }
            _ => {}
        }
    }

    /// A server registered here: it re-announces everyone, so its roster starts empty.
    pub fn linked(&self, server: &str) {
        lock(&self.rosters).insert(server.to_owned(), Roster::new());
        lock(&self.remote).remove(server);
    }

    /// A punt sent `conference`'s participants to `to`: the store's placement follows on
    /// the loop's next turn, so other dispatchers send new joins there too and the old
    /// server's dispatcher stops renewing it.
    pub fn punted(&self, conference: &str, to: &str) {
        lock(&self.forced).push((conference.to_owned(), to.to_owned()));
    }

    /// The link of a server closed: its row goes from the store at once, so no other
    /// dispatcher keeps placing on a server that may be dead.
    pub fn unlinked(&self, server: &str) {
        lock(&self.rosters).remove(server);
        lock(&self.gone).push(server.to_owned());
    }

    /// Whether this dispatcher holds the lease now.
    pub fn set_active(&self, active: bool) {
        self.active.store(active, Ordering::Relaxed);
    }

    /// The participants of `conference` on linked server `server`: (id, name, account).
    pub fn roster_of(&self, server: &str, conference: &str) -> Vec<(u32, String, String)> {
        lock(&self.rosters)
            .get(server)
            .and_then(|r| r.get(conference))
            .map(|c| {
                c.iter()
                    .map(|(p, (n, a))| (*p, n.clone(), a.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Conference -> participant count on linked server `server`.
    pub fn roster_counts(&self, server: &str) -> BTreeMap<String, u32> {
        lock(&self.rosters)
            .get(server)
            .map(|r| r.iter().map(|(c, p)| (c.clone(), p.len() as u32)).collect())
            .unwrap_or_default()
    }

    /// (conference, server) of every non-empty conference on the `linked` servers.
    pub fn running_on(&self, linked: &[String]) -> Vec<(String, String)> {
        let rosters = lock(&self.rosters);
        linked
            .iter()
            .filter_map(|s| rosters.get(s).map(|r| (s, r)))
            .flat_map(|(s, r)| {
                r.iter()
                    .filter(|(_, p)| !p.is_empty())
                    .map(move |(c, _)| (c.clone(), s.clone()))
            })
            .collect()
    }

    /// Rows to delete: servers whose link here closed since the last call.
    pub fn take_gone(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.gone))
    }

    /// The remote servers now (those whose rows another dispatcher publishes).
    pub fn remote_servers(&self) -> HashSet<String> {
        lock(&self.remote).clone()
    }

    /// Replaces the set of remote servers.
    pub fn set_remote(&self, servers: HashSet<String>) {
        *lock(&self.remote) = servers;
    }

    /// Writes the queued placement changes: releases (in one call) and punts.
    pub async fn flush_placements(&self) -> super::StoreResult<()> {
        let released = std::mem::take(&mut *lock(&self.released));
        let forced = std::mem::take(&mut *lock(&self.forced));
        self.store.release(&released).await?;
        for (c, s) in &forced {
            self.store.force(c, s).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn joined(conference: &str, participant: u32, name: &str) -> MsMsg {
        MsMsg::UserJoined {
            conference: conference.into(),
            participant,
            name: name.into(),
            account: "demo".into(),
        }
    }

    #[test]
    fn a_server_linked_here_is_no_longer_remote() {
        let c = Cluster::new(Store::Memory(MemoryStore::default()));
        lock(&c.remote).insert("ms-1".into());
        assert!(c.is_remote("ms-1"));
        c.linked("ms-1");
        assert!(!c.is_remote("ms-1"));
    }

    #[test]
    fn rosters_follow_the_registry_lines_of_linked_servers() {
        let c = Cluster::new(Store::Memory(MemoryStore::default()));
        c.linked("ms-1");
        c.observe("ms-1", &joined("a", 1, "ann"));
        c.observe("ms-1", &joined("a", 2, "bob"));
        c.observe("ms-1", &joined("b", 1, "cat"));
        c.observe(
            "ms-1",
            &MsMsg::UserLeft {
                conference: "a".into(),
                participant: 1,
                name: "ann".into(),
            },
        );
        assert_eq!(c.roster_of("ms-1", "a"), [(2, "bob".into(), "demo".into())]);
        assert_eq!(c.roster_counts("ms-1").get("b"), Some(&1));
        c.observe(
            "ms-1",
            &MsMsg::ConfDeleted {
                conference: "b".into(),
            },
        );
        assert!(!c.roster_counts("ms-1").contains_key("b"));
        assert_eq!(
            c.running_on(&["ms-1".into()]),
            [("a".into(), "ms-1".into())]
        );
        c.unlinked("ms-1");
        assert!(c.roster_counts("ms-1").is_empty());
        assert_eq!(c.take_gone(), ["ms-1"]);
    }
}
