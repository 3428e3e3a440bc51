//! Fuzzes the client's receive path: RTP/RTCP demux, RTP parsing, jitter buffer, Opus decode.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    client::fuzz_datagram(data);
});
