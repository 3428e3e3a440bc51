//! The usage log, for billing: one JSON line per leave (account, tenant, conference,
//! user, server, joined_at, left_at, seconds, media). Each line is appended, flushed and
//! synced to disk before the next, on a thread of its own so that neither the table lock
//! nor the async tasks ever wait on the disk.

use crate::core::Usage;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
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
}

/// The writer of the usage log. Records go down a channel to the writer thread; the
/// thread ends when this is dropped.
#[derive(Debug)]
pub struct UsageLog {
    tx: mpsc::Sender<Usage>,
    path: PathBuf,
}

impl UsageLog {
    /// Opens (creating if needed) `path` for appending and starts the writer thread.
    pub fn open(path: &Path) -> std::io::Result<UsageLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let (tx, rx) = mpsc::channel();
        let shown = path.to_owned();
        std::thread::Builder::new()
            .name("usage-log".into())
            .spawn(move || write_all(file, &shown, rx))?;
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
        if self.tx.send(usage).is_err() {
            tracing::error!(path = %self.path.display(), "usage log writer is gone; record lost");
        }
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
    };
    // Serializing a struct of strings and numbers cannot fail.
    let mut s = serde_json::to_string(&l).expect("usage line serializes");
    s.push('\n');
    s
}

fn write_all(mut file: File, path: &Path, rx: mpsc::Receiver<Usage>) {
    for u in rx {
        let text = line(&u);
        // Durable before the next: a crash loses at most the line being written.
        let done = file
            .write_all(text.as_bytes())
            .and_then(|()| file.flush())
            .and_then(|()| file.sync_data());
        if let Err(e) = done {
            tracing::error!(path = %path.display(), error = %e, line = %text.trim_end(), "usage log write failed");
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
}
