//! Control lines from the network: framing, every message parser, and the round trip of
//! whatever parses. `protocol::fuzz_parse` asserts that an encoded message parses back.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    protocol::fuzz_parse(data);
});
