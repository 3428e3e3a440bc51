//! Fuzzes what a worker's port does with a datagram before SRTP: RFC 7983's first-byte
//! demux and ICE-lite's binding-request parser and answer (rtc-stun underneath), and the
//! RFC 4571 framing that ICE over TCP splits its stream with.
//!
//! Properties: no panic; a request that parses is answered only with the right password,
//! and the answer is a binding success; a request built by `ice::request` from the fuzzer's
//! credentials parses back to the same ufrags and is answered.

#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use webrtc::{demux, ice, Kind};

fn provider() -> &'static dyn rtc_crypto::RTCCryptoProvider {
    static P: OnceLock<Arc<dyn rtc_crypto::RTCCryptoProvider>> = OnceLock::new();
    P.get_or_init(|| rtc_crypto::default_provider().expect("the default crypto provider builds"))
        .as_ref()
}

const PWD: &str = "fuzzfuzzfuzzfuzzfuzzfu";

fuzz_target!(|data: &[u8]| {
    let crypto = provider().crypto();
    let from: SocketAddr = "127.0.0.1:5000".parse().expect("a literal address");
    let mut framed = 0;
    let took = ice::tcp_frames(data, |f| {
        assert!(!f.is_empty());
        framed += f.len() + 2;
    });
    assert!(framed <= took && took <= data.len());
    let kind = demux(data);
    if let Ok(req) = ice::parse(data) {
        assert_eq!(kind, Kind::Stun, "a STUN request the demux does not call STUN");
        if let Ok(resp) = req.answer(PWD, from, crypto) {
            assert!(ice::is_success(&resp));
        }
        let again = ice::parse(data).expect("parsed once");
        assert!(again.answer("not-the-password-at-all", from, crypto).is_err());
    }

    // Credentials from the input, split at the first 0 byte.
    let text = String::from_utf8_lossy(data);
    let (a, b) = text.split_once('\0').unwrap_or((&text, "remote"));
    if a.is_empty() || b.is_empty() || a.contains(':') || a.len() > 200 || b.len() > 200 {
        return;
    }
    let req = ice::request(a, b, PWD, data.len() % 2 == 0, crypto);
    let parsed = ice::parse(&req).expect("our own request parses");
    assert_eq!(parsed.local_ufrag, a);
    assert_eq!(parsed.remote_ufrag, b);
    let resp = parsed.answer(PWD, from, crypto).expect("the right password is answered");
    assert!(ice::is_success(&resp));
});
