//! The usage log, for billing: one JSON line per leave (account, customer, tenant,
//! conference, user, server, joined_at, left_at, seconds, media, mode). Each line is
//! appended, flushed and synced to disk before the next, on a thread of its own so that
//! neither the table lock nor the async tasks ever wait on the disk.
//!
//! Rotation (logrotate's default: rename, then SIGHUP in `postrotate`): the writer reopens
//! the path on [`UsageLog::reopen`] (the dispatcher calls it on SIGHUP) and, before every
//! line, whenever the path no longer names the file it holds (moved away or deleted), so a
//! line goes to exactly one file: the old one before the rename, the new one after.

use crate::core::Usage;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// One line of the usage log.
#[derive(Debug, Serialize)]
struct Line<'a> {
    account: &'a str,
    customer: &'a str,
    tenant: &'a str,
    conference: &'a str,
    user: &'a str,
    server: &'a str,
    /// Unix seconds, with milliseconds.
    joined_at: f64,
    left_at: f64,
    seconds: f64,
    media: &'a str,
    mode: &'a str,
}

/// What the writer thread is asked to do, in order.
#[derive(Debug)]
enum Job {
    Write(Usage),
    /// A finished recording's line.
    Line(String),
    /// Reopen the path (SIGHUP after a rotation).
    Reopen,
}

/// The writer of the usage log. Records go down a channel to the writer thread; the
/// thread ends when this is dropped.
#[derive(Debug)]
pub struct UsageLog {
    tx: mpsc::Sender<Job>,
    path: PathBuf,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl UsageLog {
    /// Opens (creating if needed) `path` for appending and starts the writer thread.
    pub fn open(path: &Path) -> std::io::Result<UsageLog> {
        let file = open_append(path)?;
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            file,
            path: path.to_owned(),
        };
        std::thread::Builder::new()
            .name("usage-log".into())
            .spawn(move || writer.run(rx))?;
        Ok(UsageLog {
            tx,
            path: path.to_owned(),
        })
    }

    /// Opens the configured log at start-up; a failure stops the dispatcher.
    pub(crate) fn open_configured(path: &Path) -> Result<UsageLog, crate::DispatcherError> {
        UsageLog::open(path).map_err(|e| {
            crate::DispatcherError::Config(format!("usage log {}: {e}", path.display()))
        })
    }

    /// Queues one leave for the log.
    pub fn record(&self, usage: Usage) {
        if self.tx.send(Job::Write(usage)).is_err() {
            tracing::error!(path = %self.path.display(), "usage log writer is gone; record lost");
        }
    }

    /// Queues the line of a finished recording: `{"kind": "recording", ...}` with the
    /// conference's account, the server, the file and its start, stop and seconds.
    pub fn record_recording(&self, r: &crate::core::Recording) {
        let line = serde_json::json!({
            "kind": "recording",
            "account": r.account,
            "conference": r.conference,
            "server": r.server,
            "file": r.file,
            "started_at": r.started_unix_ms as f64 / 1000.0,
            "stopped_at": r.stopped_unix_ms.unwrap_or(r.started_unix_ms) as f64 / 1000.0,
            "seconds": r.seconds.unwrap_or(0.0),
        });
        if self.tx.send(Job::Line(format!("{line}\n"))).is_err() {
            tracing::error!(path = %self.path.display(), "usage log writer is gone; record lost");
        }
    }

    /// Reopens the path after the lines queued so far (logrotate's `postrotate` SIGHUP).
    pub fn reopen(&self) {
        if self.tx.send(Job::Reopen).is_err() {
            tracing::error!(path = %self.path.display(), "usage log writer is gone");
        }
    }

    /// Where the log is written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The JSON line for one stay, newline included.
pub fn line(u: &Usage) -> String {
    let joined = u.joined_unix_ms.min(u.left_unix_ms);
    let l = Line {
        account: &u.account,
        customer: &u.customer,
        tenant: &u.tenant,
        conference: &u.conference,
        user: &u.user,
        server: &u.server,
        joined_at: joined as f64 / 1000.0,
        left_at: u.left_unix_ms as f64 / 1000.0,
        seconds: (u.left_unix_ms - joined) as f64 / 1000.0,
        media: u.media,
        mode: u.mode,
    };
    // Serializing a struct of strings and numbers cannot fail.
    let mut s = serde_json::to_string(&l).expect("usage line serializes");
    s.push('\n');
    s
}

/// The writer thread's state: the open file and the path it should be.
struct Writer {
    file: File,
    path: PathBuf,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Job>) {
        for job in rx {
            match job {
                Job::Reopen => self.reopen("reopened on request"),
                Job::Write(u) => {
                    if !self.still_there() {
                        self.reopen("the file was moved away; reopened");
                    }
                    self.write(&line(&u));
                }
                Job::Line(l) => {
                    if !self.still_there() {
                        self.reopen("the file was moved away; reopened");
                    }
                    self.write(&l);
                }
            }
        }
    }

    /// Whether the path still names the open file (same device and inode).
    fn still_there(&self) -> bool {
        match (std::fs::metadata(&self.path), self.file.metadata()) {
            (Ok(p), Ok(f)) => p.dev() == f.dev() && p.ino() == f.ino(),
            _ => false,
        }
    }

    /// Opens the path afresh; on failure keeps the old file, so no line is dropped (the
    /// next line tries again).
    fn reopen(&mut self, why: &str) {
        match open_append(&self.path) {
            Ok(f) => {
                self.file = f;
                tracing::info!(path = %self.path.display(), why, "usage log");
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "usage log cannot be reopened; still writing to the old file");
            }
        }
    }

    fn write(&mut self, text: &str) {
        // Durable before the next: a crash loses at most the line being written.
        let done = self
            .file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.flush())
            .and_then(|()| self.file.sync_data());
        if let Err(e) = done {
            tracing::error!(path = %self.path.display(), error = %e, line = %text.trim_end(), "usage log write failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stay() -> Usage {
        Usage {
            account: "acme-1".into(),
            customer: "Acme".into(),
            tenant: "acme".into(),
            conference: "xyz".into(),
            user: "ann".into(),
            server: "ms-a".into(),
            joined_unix_ms: 1_700_000_000_000,
            left_unix_ms: 1_700_000_061_500,
            media: "audio",
            mode: "mix",
        }
    }

    #[test]
    fn a_line_holds_every_field() {
        let v: serde_json::Value = serde_json::from_str(line(&stay()).trim_end()).unwrap();
        assert_eq!(v["account"], "acme-1");
        assert_eq!(v["tenant"], "acme");
        assert_eq!(v["conference"], "xyz");
        assert_eq!(v["user"], "ann");
        assert_eq!(v["server"], "ms-a");
        assert_eq!(v["joined_at"], 1_700_000_000.0);
        assert_eq!(v["left_at"], 1_700_000_061.5);
        assert_eq!(v["seconds"], 61.5);
        assert_eq!(v["media"], "audio");
        assert_eq!(v["mode"], "mix");
    }

    #[test]
    fn lines_are_appended_to_what_is_there() {
        let dir = std::env::temp_dir().join(format!("usage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("usage.jsonl");
        std::fs::write(&path, "earlier\n").unwrap();
        let log = UsageLog::open(&path).unwrap();
        log.record(stay());
        log.record(Usage {
            user: "bob".into(),
            ..stay()
        });
        drop(log);
        let mut text = String::new();
        for _ in 0..200 {
            text = std::fs::read_to_string(&path).unwrap();
            if text.lines().count() == 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0], "earlier");
        assert!(lines[1].contains("\"user\":\"ann\""), "{text}");
        assert!(lines[2].contains("\"user\":\"bob\""), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_finished_recording_has_a_line_of_its_own() {
        let dir = std::env::temp_dir().join(format!("usage-rec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("usage.jsonl");
        let log = UsageLog::open(&path).unwrap();
        log.record_recording(&crate::core::Recording {
            conference: "xyz".into(),
            server: "ms-a".into(),
            file: "/r/xyz-1.mkv".into(),
            sidecar: "/r/xyz-1.json".into(),
            account: "acme-1".into(),
            started_unix_ms: 1_700_000_000_000,
            stopped_unix_ms: Some(1_700_000_020_500),
            seconds: Some(20.5),
            interrupted: false,
        });
        drop(log);
        let mut text = String::new();
        for _ in 0..200 {
            text = std::fs::read_to_string(&path).unwrap();
            if text.lines().count() == 1 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["kind"], "recording");
        assert_eq!(v["account"], "acme-1");
        assert_eq!(v["file"], "/r/xyz-1.mkv");
        assert_eq!(v["started_at"], 1_700_000_000.0);
        assert_eq!(v["stopped_at"], 1_700_000_020.5);
        assert_eq!(v["seconds"], 20.5);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod rotation_tests {
    use super::tests_support::*;
    use super::*;

    #[test]
    fn a_moved_file_is_replaced_and_a_reopen_follows_the_path() {
        let dir = tempdir("usage-rotate");
        let path = dir.join("usage.jsonl");
        let log = UsageLog::open(&path).unwrap();
        log.record(stay("ann"));
        wait_lines(&path, 1);
        // logrotate renames; the next line goes to a new file at the path, not the old one.
        std::fs::rename(&path, dir.join("usage.jsonl.1")).unwrap();
        log.record(stay("bob"));
        wait_lines(&path, 1);
        // Renamed again and told (SIGHUP): the lines after the reopen go to the new file.
        std::fs::rename(&path, dir.join("usage.jsonl.2")).unwrap();
        log.reopen();
        log.record(stay("cat"));
        drop(log);
        wait_lines(&path, 1);
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
        assert!(read(&dir.join("usage.jsonl.1")).contains("\"ann\""));
        assert!(read(&dir.join("usage.jsonl.2")).contains("\"bob\""));
        assert!(read(&path).contains("\"cat\""));
        let total: usize = ["usage.jsonl", "usage.jsonl.1", "usage.jsonl.2"]
            .iter()
            .map(|f| read(&dir.join(f)).lines().count())
            .sum();
        assert_eq!(total, 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod tests_support {
    use super::*;

    pub fn stay(user: &str) -> Usage {
        Usage {
            account: "acme-1".into(),
            customer: "Acme".into(),
            tenant: "acme".into(),
            conference: "xyz".into(),
            user: user.into(),
            server: "ms-a".into(),
            joined_unix_ms: 1_700_000_000_000,
            left_unix_ms: 1_700_000_061_500,
            media: "audio",
            mode: "reflect",
        }
    }

    pub fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Waits until `path` holds `n` lines.
    pub fn wait_lines(path: &Path, n: usize) {
        for _ in 0..500 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.lines().count() >= n {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("{} never held {n} lines", path.display());
    }
}
