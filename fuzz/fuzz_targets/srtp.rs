//! Fuzzes the hand-written in-place SRTP (RFC 3711, RFC 7714) that sits on every browser's
//! packets: unprotect of arbitrary SRTP and SRTCP, and protect/unprotect round trips.
//!
//! Properties: no panic, no read or write out of bounds; whatever unprotects was
//! authenticated; an RTP or RTCP packet we protect unprotects to itself, once (a replay is
//! refused).

#![no_main]

use libfuzzer_sys::fuzz_target;
use webrtc::srtp::{rtp_header_len, Context, Profile, Refused};

const KEY: [u8; 16] = [7; 16];
const SALT: [u8; 14] = [9; 14];

fn context(p: Profile) -> Context {
    Context::new(p, &KEY[..p.key_len()], &SALT[..p.salt_len()]).expect("fixed key sizes fit")
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let profile = if sel & 1 == 0 {
        Profile::AeadAes128Gcm
    } else {
        Profile::Aes128CmHmacSha1_80
    };
    let rtcp = sel & 2 != 0;

    // Arbitrary bytes as received SRTP: almost always refused, never a panic.
    let mut rx = context(profile);
    let mut buf = body.to_vec();
    let _ = if rtcp {
        rx.unprotect_rtcp(&mut buf)
    } else {
        rx.unprotect_rtp(&mut buf)
    };

    // The body as a plain packet: what protect accepts comes back whole, once.
    let mut tx = context(profile);
    let mut rx = context(profile);
    let overhead = profile.rtp_overhead() + 4; // SRTCP adds its index too
    let mut buf = body.to_vec();
    buf.resize(body.len() + overhead, 0);
    let protected = if rtcp {
        tx.protect_rtcp(&mut buf, body.len())
    } else {
        tx.protect_rtp(&mut buf, body.len())
    };
    let Ok(n) = protected else {
        if !rtcp {
            assert!(rtp_header_len(body).is_none() || body.len() < 12);
        }
        return;
    };
    let wire = buf[..n].to_vec();
    let mut again = wire.clone();
    let got = if rtcp {
        rx.unprotect_rtcp(&mut again)
    } else {
        rx.unprotect_rtp(&mut again)
    };
    let len = got.expect("what we protect unprotects");
    assert_eq!(&again[..len], body, "the round trip changed the packet");
    let mut replay = wire;
    let second = if rtcp {
        rx.unprotect_rtcp(&mut replay)
    } else {
        rx.unprotect_rtp(&mut replay)
    };
    assert_eq!(second.err(), Some(Refused::Replay));
});
