use crate::{ProtoError, MAX_LINE};

/// One framing step over buffered stream bytes: `None` when more bytes are needed, else
/// how many bytes the step consumed and the line (without its LF, and without a CR before
/// it, so that `nc -C` works) or why the line is refused. A line longer than [`MAX_LINE`]
/// is refused as soon as it is seen, without waiting for its LF, so a peer cannot make us
/// buffer without bound. Every framer of the protocol (this crate's [`LineBuffer`], the
/// connection layer's codec) calls this one function.
pub fn split_line(buf: &[u8]) -> Option<(usize, Result<&str, ProtoError>)> {
    let Some(pos) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > MAX_LINE {
            return Some((buf.len(), Err(ProtoError::LineTooLong { max: MAX_LINE })));
        }
        return None;
    };
    let mut line = &buf[..pos];
    if let [head @ .., b'\r'] = line {
        line = head;
    }
    let checked = if line.len() > MAX_LINE {
        Err(ProtoError::LineTooLong { max: MAX_LINE })
    } else {
        std::str::from_utf8(line).map_err(|_| ProtoError::NotUtf8)
    };
    Some((pos + 1, checked))
}

/// The line carried by one message of a message-framed transport (a WebSocket text
/// frame): one line per message, an LF (or CRLF) at its end allowed, none inside.
pub fn message_line(text: &str) -> Result<&str, ProtoError> {
    let line = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(text);
    if line.len() > MAX_LINE {
        return Err(ProtoError::LineTooLong { max: MAX_LINE });
    }
    if line.contains('\n') {
        return Err(ProtoError::SeveralLines);
    }
    Ok(line)
}

/// Frames a byte stream into protocol lines with [`split_line`].
///
/// Bytes go in with [`LineBuffer::extend`]; whole lines come out of [`LineBuffer::next_line`].
#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Bytes before this index were already returned as lines.
    start: usize,
}

impl LineBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn extend(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered that are not yet part of a returned line.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete line, an error for an over-long or non-UTF-8 line, or `None`
    /// when more bytes are needed. After an error the connection should be closed.
    pub fn next_line(&mut self) -> Option<Result<String, ProtoError>> {
        match split_line(&self.buf[self.start..]) {
            None => {
                self.compact();
                None
            }
            Some((used, line)) => {
                let line = line.map(str::to_owned);
                self.start += used;
                Some(line)
            }
        }
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

/// A control line fit for a log: a `dispatch` line's ticket and any `ticket=` option are
/// replaced with `<redacted>` (a ticket lets its holder join until it expires).
pub fn redact_line(line: &str) -> String {
    let line = line.trim_end_matches(['\r', '\n']);
    let mut fields: Vec<&str> = line.split('\t').collect();
    let verb = fields.first().copied().unwrap_or("");
    for (i, f) in fields.iter_mut().enumerate() {
        if f.starts_with("ticket=") {
            *f = "ticket=<redacted>";
        } else if i == 2 && verb == "dispatch" {
            *f = "<redacted>";
        }
    }
    fields.join("\t")
}

#[cfg(test)]
mod tests {

    #[test]
    fn tickets_are_redacted() {
        assert_eq!(
            redact_line("join\tc\tdemo\talice\tticket=SECRET\tmode=mix\n"),
            "join\tc\tdemo\talice\tticket=<redacted>\tmode=mix"
        );
        assert_eq!(
            redact_line("dispatch\t127.0.0.1:1\tSECRET\tother"),
            "dispatch\t127.0.0.1:1\t<redacted>\tother"
        );
        assert_eq!(redact_line("ping\tx"), "ping\tx");
    }
    use super::*;

    #[test]
    fn splits_lines_across_chunks() {
        let mut lb = LineBuffer::new();
        lb.extend(b"join\txyz\tdemo");
        assert!(lb.next_line().is_none());
        lb.extend(b"\tann\r\nping\n");
        assert_eq!(lb.next_line().unwrap().unwrap(), "join\txyz\tdemo\tann");
        assert_eq!(lb.next_line().unwrap().unwrap(), "ping");
        assert!(lb.next_line().is_none());
        assert_eq!(lb.pending(), 0);
    }

    #[test]
    fn rejects_over_long_line_before_lf() {
        let mut lb = LineBuffer::new();
        lb.extend(&vec![b'a'; MAX_LINE + 1]);
        assert_eq!(
            lb.next_line(),
            Some(Err(ProtoError::LineTooLong { max: MAX_LINE }))
        );
    }

    #[test]
    fn accepts_exactly_max_line() {
        let mut lb = LineBuffer::new();
        lb.extend(&vec![b'a'; MAX_LINE]);
        assert!(lb.next_line().is_none());
        lb.extend(b"\n");
        assert_eq!(lb.next_line().unwrap().unwrap().len(), MAX_LINE);
    }

    #[test]
    fn rejects_non_utf8() {
        let mut lb = LineBuffer::new();
        lb.extend(b"join\t\xff\xfe\n");
        assert_eq!(lb.next_line(), Some(Err(ProtoError::NotUtf8)));
    }

    #[test]
    fn message_lines() {
        assert_eq!(message_line("ping"), Ok("ping"));
        assert_eq!(message_line("ping\n"), Ok("ping"));
        assert_eq!(message_line("ping\r\n"), Ok("ping"));
        assert_eq!(message_line("ping\nping"), Err(ProtoError::SeveralLines));
        let long = "a".repeat(MAX_LINE + 1);
        assert_eq!(
            message_line(&long),
            Err(ProtoError::LineTooLong { max: MAX_LINE })
        );
        assert_eq!(message_line(&long[1..]).map(str::len), Ok(MAX_LINE));
    }
}
