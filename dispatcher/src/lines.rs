//! Reading protocol lines from a TCP stream with the protocol crate's framer.

use protocol::{LineBuffer, ProtoError};
use tokio::io::{AsyncRead, AsyncReadExt};

/// What reading a line gave.
pub(crate) enum Read {
    Line(String),
    Bad(ProtoError),
    Closed,
}

pub(crate) struct LineReader<R> {
    inner: R,
    lines: LineBuffer,
    buf: Box<[u8; 4096]>,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(inner: R) -> Self {
        LineReader {
            inner,
            lines: LineBuffer::new(),
            buf: Box::new([0; 4096]),
        }
    }

    /// The next line; I/O errors read as a closed connection.
    pub async fn next(&mut self) -> Read {
        loop {
            match self.lines.next_line() {
                Some(Ok(line)) => return Read::Line(line),
                Some(Err(e)) => return Read::Bad(e),
                None => {}
            }
            match self.inner.read(&mut self.buf[..]).await {
                Ok(0) | Err(_) => return Read::Closed,
                Ok(n) => self.lines.extend(&self.buf[..n]),
            }
        }
    }
}
