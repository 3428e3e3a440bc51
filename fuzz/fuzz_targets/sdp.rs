//! Fuzzes a browser's offer on its way in: the `sdp`/`sdpend` framing on the control lines
//! (`protocol::sdp`), the offer parser (rtc-sdp underneath) and the answer we write.
//!
//! Properties: no panic; framing a text and assembling the lines gives the text back with
//! CRLF line ends, or a clear error; an offer that parses gets an answer that parses as an
//! offer again (our answer carries ICE credentials, a fingerprint and Opus) with our
//! credentials in it, and one role per offered section.

#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::sdp::{frame, SdpAssembler, SdpFrameError};
use protocol::SdpKind;
use webrtc::answer::answer;
use webrtc::sdp::{Local, Offer};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (lines, count) = frame(&text);
    let mut asm = SdpAssembler::default();
    let mut refused = None;
    for l in &lines {
        if let Err(e) = asm.push(SdpKind::Offer, l) {
            refused = Some(e);
            break;
        }
    }
    let assembled = match refused {
        Some(e) => {
            assert_eq!(e, SdpFrameError::TooLong);
            assert!(!asm.is_open(), "a refused description is dropped");
            return;
        }
        None => asm.end(SdpKind::Offer, count),
    };
    let Ok(assembled) = assembled else {
        assert!(lines.is_empty(), "an unrefused framing must assemble");
        return;
    };
    let mut expect = String::new();
    for l in &lines {
        expect.push_str(l);
        expect.push_str("\r\n");
    }
    assert_eq!(assembled, expect);

    let Ok(offer) = Offer::parse(&assembled) else {
        return;
    };
    let local = Local {
        ice_ufrag: "srvU".into(),
        ice_pwd: "serverpasswordserverpw".into(),
        fingerprint: vec!["AB"; 32].join(":"),
        addr: "127.0.0.1:40000".parse().expect("a literal address"),
        tcp: true,
    };
    if let Ok(ans) = answer(&offer, &local, 7, Some("vp8")) {
        let back = Offer::parse(&ans.sdp).expect("our answer parses");
        assert_eq!(ans.roles.len(), offer.media.len());
        assert_eq!(ans.slot_mids.len(), ans.slots.len());
        assert_eq!(back.ice_ufrag, local.ice_ufrag);
        assert_eq!(back.ice_pwd, local.ice_pwd);
        assert!(back.audio().is_some(), "our answer carries Opus");
    }
});
