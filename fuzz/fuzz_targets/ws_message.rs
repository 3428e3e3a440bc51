//! Fuzzes the two framings of control lines: one line per WebSocket text message
//! (`protocol::message_line`) and LF-ended lines in a TCP byte stream (`LineBuffer`, which
//! the connection layer's codec shares through `split_line`). The WebSocket frames
//! themselves are tungstenite's; what we add is the step from a message to a line.
//!
//! Properties: no panic; a stream framed in arbitrary chunks gives the same lines as the
//! stream fed at once; a message accepted as one line is the same line the stream framer
//! gives for that text followed by LF, and it then goes through every message parser.

#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::{message_line, LineBuffer};

fn lines(chunks: &[&[u8]]) -> Vec<Result<String, String>> {
    let mut lb = LineBuffer::new();
    let mut out = Vec::new();
    for c in chunks {
        lb.extend(c);
        while let Some(l) = lb.next_line() {
            let failed = l.is_err();
            out.push(l.map_err(|e| e.to_string()));
            if failed {
                // The connection closes after an error: nothing after it counts.
                return out;
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    // The same bytes at once and in chunks of `step` (1..=64) bytes.
    let whole = lines(&[body]);
    let chunks: Vec<&[u8]> = body.chunks(usize::from(step % 64) + 1).collect();
    let chunked = lines(&chunks);
    assert_eq!(whole, chunked, "chunking changed the lines");

    // One WebSocket message.
    if let Ok(text) = std::str::from_utf8(body) {
        if let Ok(line) = message_line(text) {
            let mut framed = line.as_bytes().to_vec();
            framed.push(b'\n');
            let streamed = lines(&[&framed]);
            // The stream framer also drops a CR before the LF (so `nc -C` works).
            let expect = line.strip_suffix('\r').unwrap_or(line);
            assert_eq!(
                streamed.first().and_then(|l| l.as_ref().ok()).map(String::as_str),
                Some(expect),
                "a message line the stream framer does not give back"
            );
            protocol::fuzz_parse(line.as_bytes());
        }
    }
});
