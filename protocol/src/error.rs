use crate::ErrorCode;

/// Why a line was refused. Every variant maps to a wire [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("line longer than {max} bytes")]
    LineTooLong { max: usize },
    #[error("line is not valid UTF-8")]
    NotUtf8,
    #[error("empty line")]
    Empty,
    #[error("unknown verb {0:?}")]
    UnknownVerb(String),
    #[error("{verb}: expected {expected} fields, got {got}")]
    FieldCount {
        verb: &'static str,
        expected: &'static str,
        got: usize,
    },
    #[error("{verb}: bad {field}: {value:?}")]
    BadValue {
        verb: &'static str,
        field: &'static str,
        value: String,
    },
}

impl ProtoError {
    /// The code sent back in the `error` line.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtoError::LineTooLong { .. } => ErrorCode::LineTooLong,
            ProtoError::NotUtf8 => ErrorCode::NotUtf8,
            ProtoError::UnknownVerb(_) => ErrorCode::UnknownVerb,
            ProtoError::Empty | ProtoError::FieldCount { .. } | ProtoError::BadValue { .. } => {
                ErrorCode::BadRequest
            }
        }
    }
}
