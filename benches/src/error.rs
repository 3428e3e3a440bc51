//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can stop a load run or a baseline forwarder.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("bad arguments: {0}")]
    Args(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("join of {user} failed: {reason}")]
    Join { user: String, reason: String },
    #[error("{path}: {reason}")]
    Output { path: PathBuf, reason: String },
    #[error("server CPU: {0}")]
    Cpu(String),
    #[error("plot: {0}")]
    Plot(String),
    #[error("a worker thread failed: {0}")]
    Thread(String),
}

impl BenchError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
        let what = what.into();
        move |source| BenchError::Io { what, source }
    }

    /// Wraps any displayable failure to write `path`.
    pub fn output(path: &std::path::Path, reason: impl std::fmt::Display) -> BenchError {
        BenchError::Output {
            path: path.to_owned(),
            reason: reason.to_string(),
        }
    }
}
