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
    #[error("one message holds several lines")]
    SeveralLines,
    #[error("unknown verb {}", quote(.0))]
    UnknownVerb(String),
    #[error("{verb}: expected {expected} fields, got {got}")]
    FieldCount {
        verb: &'static str,
        expected: &'static str,
        got: usize,
    },
    #[error("{verb}: bad {field}: {}", quote(value))]
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
            ProtoError::Empty
            | ProtoError::SeveralLines
            | ProtoError::FieldCount { .. }
            | ProtoError::BadValue { .. } => ErrorCode::BadRequest,
        }
    }
}

/// Longest part of a bad value an error line quotes back, in bytes.
pub const QUOTE_MAX: usize = 64;

/// A bad value as error lines quote it: at most [`QUOTE_MAX`] bytes (cut at a character
/// boundary, `...` marking the cut), so a peer's 3,000-byte name is not sent back whole.
pub fn quote(value: &str) -> String {
    let (head, cut) = cut(value);
    format!("{head:?}{}", if cut { "..." } else { "" })
}

/// A peer's value as text of ours quotes it (`unknown account NAME`): at most
/// [`QUOTE_MAX`] bytes, `...` marking a cut.
pub fn clip(value: &str) -> String {
    let (head, cut) = cut(value);
    format!("{head}{}", if cut { "..." } else { "" })
}

fn cut(value: &str) -> (&str, bool) {
    if value.len() <= QUOTE_MAX {
        return (value, false);
    }
    let mut end = QUOTE_MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    (&value[..end], true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_quoted_short() {
        let e = ProtoError::BadValue {
            verb: "join",
            field: "name",
            value: "x".repeat(3000),
        };
        let text = e.to_string();
        assert!(text.len() < 120, "{text}");
        assert!(text.ends_with("\"...") || text.ends_with("..."), "{text}");
        assert_eq!(quote("abc"), "\"abc\"");
        // A multi-byte character straddling the cut is not split.
        let s = format!("{}é{}", "a".repeat(63), "b".repeat(10));
        assert_eq!(quote(&s), format!("{:?}...", "a".repeat(63)));
        assert!(ProtoError::UnknownVerb("v".repeat(500)).to_string().len() < 100);
    }
}
