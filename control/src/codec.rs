//! Protocol lines over a byte stream, as a `tokio_util` codec, with the protocol's own
//! framing function so every link refuses the same lines.

use bytes::BytesMut;
use protocol::ProtoError;
use tokio_util::codec::Decoder;

/// Decodes LF-ended lines (CR before the LF dropped) of at most `protocol::MAX_LINE` bytes.
/// After an error the stream is unusable: the caller closes the connection.
#[derive(Debug, Default)]
pub struct LineCodec {
    failed: bool,
}

/// Why a stream of lines failed.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error(transparent)]
    Proto(#[from] ProtoError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Decoder for LineCodec {
    type Item = String;
    type Error = LineError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<String>, LineError> {
        if self.failed {
            buf.clear();
            return Ok(None);
        }
        match protocol::split_line(buf) {
            None => Ok(None),
            Some((used, line)) => {
                let line = line.map(str::to_owned);
                let _ = buf.split_to(used);
                line.map(Some).map_err(|e| {
                    self.failed = true;
                    e.into()
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_like_the_protocol() {
        let mut c = LineCodec::default();
        let mut b = BytesMut::from(&b"join\ta\tb\tc\r\nping\npar"[..]);
        assert_eq!(c.decode(&mut b).unwrap().unwrap(), "join\ta\tb\tc");
        assert_eq!(c.decode(&mut b).unwrap().unwrap(), "ping");
        assert!(c.decode(&mut b).unwrap().is_none());
        assert_eq!(&b[..], b"par");
        let mut long = BytesMut::from(&vec![b'x'; protocol::MAX_LINE + 1][..]);
        assert!(matches!(
            c.decode(&mut long),
            Err(LineError::Proto(ProtoError::LineTooLong { .. }))
        ));
        // Nothing more comes out of a failed stream.
        let mut more = BytesMut::from(&b"ping\n"[..]);
        assert!(c.decode(&mut more).unwrap().is_none());
    }
}
