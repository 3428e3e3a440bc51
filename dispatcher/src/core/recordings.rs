//! The recordings media servers report (`recording` lines), for `GET /api/recordings`, the
//! dashboard's events and the usage log.

use serde::Serialize;

use super::Tables;

/// Recordings kept in the list; older ones drop off (their files stay on the servers).
const KEPT: usize = 1000;

/// One recording, as its media server reported it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Recording {
    pub conference: String,
    pub server: String,
    /// The file's path on the media server (its sidecar: the same with `.json`).
    pub file: String,
    pub sidecar: String,
    pub account: String,
    pub started_unix_ms: u64,
    /// `None` while it runs.
    pub stopped_unix_ms: Option<u64>,
    pub seconds: Option<f64>,
    /// Its server was lost while it ran: the file ends about then (and plays to there).
    pub interrupted: bool,
}

impl Tables {
    /// A `recording` line from `server`: a start adds an entry, a stop completes it and
    /// returns it (for the usage log). Both are events on the dashboard.
    pub fn recording(
        &mut self,
        unix_ms: u64,
        server: &str,
        conference: &str,
        on: bool,
        file: &str,
        seconds: f64,
    ) -> Option<Recording> {
        let account = self
            .conference(conference)
            .map(|c| c.account.clone())
            .unwrap_or_default();
        let detail = if on {
            file.to_owned()
        } else {
            format!("{file} ({seconds:.1} s)")
        };
        let kind = if on {
            "recording-started"
        } else {
            "recording-stopped"
        };
        self.log(unix_ms, kind, server, conference, detail);
        // Charged (or freed) at once; the server's next report counts it too.
        let units = self.policy().cost.recording;
        if let Some(s) = self.servers.get_mut(server) {
            s.unused = if on {
                s.unused.saturating_sub(units)
            } else {
                s.unused.saturating_add(units).min(s.total)
            };
        }
        let found = self
            .recordings
            .iter_mut()
            .rev()
            .find(|r| r.server == server && r.file == file);
        match (on, found) {
            (true, Some(_)) => None,
            (true, None) => {
                if self.recordings.len() == KEPT {
                    self.recordings.pop_front();
                }
                self.recordings.push_back(Recording {
                    conference: conference.to_owned(),
                    server: server.to_owned(),
                    file: file.to_owned(),
                    sidecar: sidecar_of(file),
                    account,
                    started_unix_ms: unix_ms,
                    stopped_unix_ms: None,
                    seconds: None,
                    interrupted: false,
                });
                None
            }
            (false, Some(r)) => {
                r.stopped_unix_ms = Some(unix_ms);
                r.seconds = Some(seconds);
                Some(r.clone())
            }
            // A stop whose start this dispatcher never saw (it restarted): list it whole.
            (false, None) => {
                let r = Recording {
                    conference: conference.to_owned(),
                    server: server.to_owned(),
                    file: file.to_owned(),
                    sidecar: sidecar_of(file),
                    account,
                    started_unix_ms: unix_ms.saturating_sub((seconds * 1000.0) as u64),
                    stopped_unix_ms: Some(unix_ms),
                    seconds: Some(seconds),
                    interrupted: false,
                };
                if self.recordings.len() == KEPT {
                    self.recordings.pop_front();
                }
                self.recordings.push_back(r.clone());
                Some(r)
            }
        }
    }

    /// Server `server` was lost: its running recordings end now, as far as anyone can tell
    /// (the file on its disk plays up to about then).
    pub(super) fn recordings_lost(&mut self, unix_ms: u64, server: &str) {
        for r in self
            .recordings
            .iter_mut()
            .filter(|r| r.server == server && r.stopped_unix_ms.is_none())
        {
            r.stopped_unix_ms = Some(unix_ms);
            r.seconds = Some(unix_ms.saturating_sub(r.started_unix_ms) as f64 / 1000.0);
            r.interrupted = true;
        }
    }

    /// Every recording reported, oldest first.
    pub fn recordings(&self) -> impl Iterator<Item = &Recording> {
        self.recordings.iter()
    }
}

fn sidecar_of(file: &str) -> String {
    match file.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() && !stem.ends_with('/') => format!("{stem}.json"),
        _ => format!("{file}.json"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_is_listed_at_its_start_and_completed_at_its_stop() {
        let mut t = Tables::new();
        assert!(t
            .recording(1_000, "ms1", "c", true, "/r/c-1.mkv", 0.0)
            .is_none());
        let r: Vec<_> = t.recordings().cloned().collect();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].sidecar, "/r/c-1.json");
        assert_eq!(r[0].stopped_unix_ms, None);
        // A repeated start changes nothing.
        assert!(t
            .recording(1_500, "ms1", "c", true, "/r/c-1.mkv", 0.0)
            .is_none());
        assert_eq!(t.recordings().count(), 1);
        let done = t
            .recording(21_000, "ms1", "c", false, "/r/c-1.mkv", 20.0)
            .expect("the stop completes it");
        assert_eq!(done.seconds, Some(20.0));
        assert_eq!(done.stopped_unix_ms, Some(21_000));
        assert_eq!(t.recordings().count(), 1);
        let kinds: Vec<_> = t.events().map(|e| e.kind).collect();
        assert!(kinds.contains(&"recording-started"), "{kinds:?}");
        assert!(kinds.contains(&"recording-stopped"), "{kinds:?}");
        // A stop never seen started is listed whole.
        let r = t
            .recording(9_000, "ms2", "d", false, "/r/d-2.ogg", 4.0)
            .unwrap();
        assert_eq!(r.started_unix_ms, 5_000);
        assert_eq!(t.recordings().count(), 2);
        // A server lost mid-recording: its recording ends then, marked interrupted.
        t.recording(30_000, "ms3", "e", true, "/r/e-3.mkv", 0.0);
        t.recordings_lost(36_000, "ms3");
        let e = t.recordings().find(|r| r.server == "ms3").unwrap();
        assert_eq!((e.seconds, e.interrupted), (Some(6.0), true));
    }
}
