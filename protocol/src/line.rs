use crate::{ProtoError, MAX_LINE};

/// Frames a TCP byte stream into protocol lines.
///
/// Bytes go in with [`LineBuffer::extend`]; whole lines come out of [`LineBuffer::next_line`].
/// A line longer than [`MAX_LINE`] is an error as soon as it is seen, without waiting for
/// its LF, so a peer cannot make us buffer without bound. A trailing CR is dropped so that
/// `nc -C` works.
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
        let rest = &self.buf[self.start..];
        let Some(pos) = rest.iter().position(|&b| b == b'\n') else {
            if rest.len() > MAX_LINE {
                return Some(Err(ProtoError::LineTooLong { max: MAX_LINE }));
            }
            self.compact();
            return None;
        };
        let mut line = &rest[..pos];
        self.start += pos + 1;
        if let [head @ .., b'\r'] = line {
            line = head;
        }
        if line.len() > MAX_LINE {
            return Some(Err(ProtoError::LineTooLong { max: MAX_LINE }));
        }
        Some(match std::str::from_utf8(line) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(ProtoError::NotUtf8),
        })
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
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
}
