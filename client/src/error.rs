//! The one error type of the client crate, and how it maps to exit codes.

use protocol::{Actor, ErrorCode, ProtoError};
use std::path::PathBuf;

/// Why the client stopped, or why one of its parts failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Bad or missing settings (flags or `--config` file).
    #[error("config: {0}")]
    Config(String),
    #[error("cannot read config file {path}: {source}")]
    ConfigFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to {what} {addr}: {source}")]
    Connect {
        what: &'static str,
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The server closed the control connection while we were still in the session.
    #[error("{0} closed the connection")]
    Closed(&'static str),
    /// The server answered nothing, not even our keepalive `ping`s, for this long: a host
    /// that died without closing its connections.
    #[error("{0} silent for {1} s")]
    Silent(&'static str, u64),
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent a line the protocol codec cannot frame (too long, not UTF-8).
    #[error("bad line from server: {0}")]
    Protocol(#[from] ProtoError),
    /// The server sent a valid message that makes no sense at this point of the flow.
    #[error("protocol violation: {0}")]
    Unexpected(String),
    #[error("rejected: {code} {text}")]
    Rejected { code: ErrorCode, text: String },
    #[error("server error: {code} {text}")]
    Server { code: ErrorCode, text: String },
    /// A moderator (or an operator) removed us from the conference.
    #[error("kicked by {by}: {reason}")]
    Kicked { by: Actor, reason: String },
    #[error(transparent)]
    Codec(#[from] codecs::CodecError),
    #[error("wav {path}: {source}")]
    Wav {
        path: PathBuf,
        #[source]
        source: hound::Error,
    },
}

impl ClientError {
    /// The process exit code: 2 when a server refused us, 3 when a moderator removed us,
    /// 1 for every other failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Rejected { .. } | ClientError::Server { .. } => 2,
            ClientError::Kicked { .. } => 3,
            _ => 1,
        }
    }
}
