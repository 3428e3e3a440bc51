//! Fuzzes what loadgen and rawfwd read off the network: the probe inside a forwarded
//! packet and the raw baseline's registration datagrams.
#![no_main]

use benches::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wire::read(data);
    let _ = wire::parse_raw_msg(wire::RAW_JOIN, data);
    let _ = wire::parse_raw_msg(wire::RAW_OK, data);
});
