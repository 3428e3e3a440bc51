//! ICE-lite (RFC 8445 §2.5): we never send checks, we answer the browser's. A binding request
//! is answered only when its USERNAME names one of our sessions, its MESSAGE-INTEGRITY
//! verifies with that session's password and its FINGERPRINT is right; the address it came
//! from is then the one address that session's media may go to. Its repeated checks are
//! consent freshness (RFC 7675): without one for the consent timeout, sending stops.

use std::net::SocketAddr;

use stun::attributes::{ATTR_USERNAME, ATTR_USE_CANDIDATE};
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{Message, Setter, BINDING_REQUEST, BINDING_SUCCESS};
use stun::textattrs::TextAttribute;
use stun::xoraddr::XorMappedAddress;

/// A binding request that parsed, before its credentials are checked.
pub struct Request {
    msg: Message,
    /// Our ufrag: the part of USERNAME before the colon.
    pub local_ufrag: String,
    /// The peer's ufrag: the part after it.
    pub remote_ufrag: String,
    /// USE-CANDIDATE: the controlling agent nominates this pair.
    pub nominate: bool,
}

/// Why a STUN datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StunRefused {
    /// Not a binding request, or it does not parse, or its FINGERPRINT is wrong.
    Malformed,
    /// USERNAME names no session of ours (or names it with the wrong peer ufrag).
    UnknownUser,
    /// MESSAGE-INTEGRITY did not verify with the session's password.
    BadIntegrity,
}

/// Parses a binding request and its USERNAME.
pub fn parse(data: &[u8]) -> Result<Request, StunRefused> {
    // RFC 5389 §6: a STUN message's two top bits are zero; rtc-stun masks them off, so a
    // TURN channel datagram (first byte 0x40..) could otherwise pass for a request.
    if data.first().is_none_or(|b| b & 0xC0 != 0) {
        return Err(StunRefused::Malformed);
    }
    let mut msg = Message::new();
    msg.unmarshal_binary(data)
        .map_err(|_| StunRefused::Malformed)?;
    if msg.typ != BINDING_REQUEST || FINGERPRINT.check(&msg).is_err() {
        return Err(StunRefused::Malformed);
    }
    let user = TextAttribute::get_from_as(&msg, ATTR_USERNAME)
        .map_err(|_| StunRefused::UnknownUser)?
        .text;
    let (local, remote) = user.split_once(':').ok_or(StunRefused::UnknownUser)?;
    Ok(Request {
        local_ufrag: local.to_owned(),
        remote_ufrag: remote.to_owned(),
        nominate: msg.contains(ATTR_USE_CANDIDATE),
        msg,
    })
}

impl Request {
    /// Checks MESSAGE-INTEGRITY with our password and builds the success response for
    /// `from` (XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT).
    pub fn answer(
        mut self,
        local_pwd: &str,
        from: SocketAddr,
        crypto: &dyn rtc_crypto::RTCCrypto,
    ) -> Result<Vec<u8>, StunRefused> {
        MessageIntegrity::check(&mut self.msg, local_pwd.as_bytes(), crypto)
            .map_err(|_| StunRefused::BadIntegrity)?;
        let mut out = Message::new();
        let setters: [Box<dyn Setter + '_>; 5] = [
            Box::new(self.msg.clone()),
            Box::new(BINDING_SUCCESS),
            Box::new(XorMappedAddress {
                ip: from.ip(),
                port: from.port(),
            }),
            Box::new(MessageIntegrity::new_short_term_integrity_with_provider(
                local_pwd.to_owned(),
                crypto,
            )),
            Box::new(FINGERPRINT),
        ];
        out.build(&setters).map_err(|_| StunRefused::Malformed)?;
        Ok(out.raw)
    }
}

/// Builds a binding request as a browser would (tests, and the Rust client peer): USERNAME
/// `remote:local`, integrity with the remote password, FINGERPRINT.
pub fn request(
    remote_ufrag: &str,
    local_ufrag: &str,
    remote_pwd: &str,
    nominate: bool,
    crypto: &dyn rtc_crypto::RTCCrypto,
) -> Vec<u8> {
    let mut m = Message::new();
    let _ = m.new_transaction_id();
    let mut setters: Vec<Box<dyn Setter + '_>> = vec![
        Box::new(BINDING_REQUEST),
        Box::new(TextAttribute::new(
            ATTR_USERNAME,
            format!("{remote_ufrag}:{local_ufrag}"),
        )),
    ];
    if nominate {
        setters.push(Box::new(UseCandidate));
    }
    setters.push(Box::new(
        MessageIntegrity::new_short_term_integrity_with_provider(remote_pwd.to_owned(), crypto),
    ));
    setters.push(Box::new(FINGERPRINT));
    let _ = m.build(&setters);
    m.raw
}

struct UseCandidate;

impl Setter for UseCandidate {
    fn add_to(&self, m: &mut Message) -> rtc_shared::error::Result<()> {
        m.add(ATTR_USE_CANDIDATE, &[]);
        Ok(())
    }
}

/// Whether `data` is a binding success response (the client side of tests).
pub fn is_success(data: &[u8]) -> bool {
    let mut m = Message::new();
    m.unmarshal_binary(data).is_ok() && m.typ == BINDING_SUCCESS
}

/// Splits RFC 4571 framing (ICE over TCP, RFC 6544): each datagram behind a 16-bit
/// big-endian length. Calls `frame` for each complete, non-empty one at the start of `buf`
/// and returns how many bytes they took; the rest waits for more bytes.
pub fn tcp_frames(buf: &[u8], mut frame: impl FnMut(&[u8])) -> usize {
    let mut at = 0;
    while buf.len() - at >= 2 {
        let len = usize::from(u16::from_be_bytes([buf[at], buf[at + 1]]));
        let Some(body) = buf.get(at + 2..at + 2 + len) else {
            break;
        };
        if len > 0 {
            frame(body);
        }
        at += 2 + len;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_right_check_is_answered_and_wrong_ones_are_not() {
        let p = rtc_crypto::default_provider().unwrap();
        let c = p.crypto();
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let req = request("srv", "brw", "secretsecretsecret", true, c);
        let r = parse(&req).unwrap();
        assert_eq!(
            (r.local_ufrag.as_str(), r.remote_ufrag.as_str()),
            ("srv", "brw")
        );
        assert!(r.nominate);
        let resp = r.answer("secretsecretsecret", from, c).unwrap();
        assert!(is_success(&resp));
        let r = parse(&req).unwrap();
        assert_eq!(
            r.answer("wrongwrongwrong", from, c).err(),
            Some(StunRefused::BadIntegrity)
        );
        let mut broken = req.clone();
        broken[25] ^= 1;
        assert!(parse(&broken).is_err());
        assert_eq!(parse(&[0, 1, 0]).err(), Some(StunRefused::Malformed));
    }

    /// Found by the stun fuzz target: first byte 0x40 (a TURN channel number to RFC 7983's
    /// demux) with a valid FINGERPRINT over the rest parsed as a binding request.
    #[test]
    fn a_message_with_its_top_bits_set_is_not_stun() {
        let data: [u8; 75] = [
            0x40, 0x01, 0x00, 0x34, 0x21, 0x12, 0xa4, 0x42, 0x00, 0x01, 0x03, 0x04, 0x02, 0x05,
            0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x00, 0x06, 0x00, 0x09, 0x73, 0x72, 0x76, 0x55,
            0x3a, 0x62, 0x72, 0x77, 0x55, 0x00, 0x00, 0x00, 0x00, 0x25, 0x00, 0x00, 0x00, 0x08,
            0x00, 0x14, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xde, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0xb2, 0x35, 0x4d, 0x1f, 0x80, 0x28, 0x00, 0x04, 0x2c,
            0x8f, 0x13, 0x5f, 0x0a, 0x9f,
        ];
        assert_eq!(crate::demux(&data), crate::Kind::Other);
        assert_eq!(parse(&data).err(), Some(StunRefused::Malformed));
    }
}
