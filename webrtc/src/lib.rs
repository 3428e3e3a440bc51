//! Sans-IO WebRTC sessions for browsers (no sockets, no clock reads, no tokio): the offer
//! and answer ([`sdp`]), ICE-lite ([`ice`]), DTLS-SRTP ([`session`]) and in-place SRTP
//! ([`srtp`]). A media worker owns one [`session::Table`] and feeds it the datagrams that
//! RFC 7983's first-byte demux ([`demux`]) gives it.

pub mod answer;
pub mod client;
pub mod downlink;
pub mod ice;
pub mod rids;
pub mod sdp;
pub mod session;
pub mod slots;
pub mod srtp;
pub mod twcc;

pub use session::{Counters, Event, Identity, Params, Table};
pub use slots::{SlotDrop, SlotKind, Slots};

/// What a datagram on a worker's port is, by its first byte (RFC 7983 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stun,
    Dtls,
    Rtp,
    /// Anything else (ZRTP, TURN channels, junk): dropped.
    Other,
}

/// RFC 7983's demultiplexing of STUN, DTLS and (S)RTP/(S)RTCP on one port.
pub fn demux(data: &[u8]) -> Kind {
    match data.first() {
        Some(0..=3) => Kind::Stun,
        Some(20..=63) => Kind::Dtls,
        Some(128..=191) => Kind::Rtp,
        _ => Kind::Other,
    }
}

/// Everything that can go wrong setting a session up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("srtp: {0}")]
    Srtp(&'static str),
    #[error("dtls: {0}")]
    Dtls(String),
    #[error("sdp: {0}")]
    Sdp(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_byte_picks_the_protocol() {
        assert_eq!(demux(&[0, 1]), Kind::Stun);
        assert_eq!(demux(&[3]), Kind::Stun);
        assert_eq!(demux(&[22, 254, 253]), Kind::Dtls);
        assert_eq!(demux(&[63]), Kind::Dtls);
        assert_eq!(demux(&[0x80, 111]), Kind::Rtp);
        assert_eq!(demux(&[191]), Kind::Rtp);
        assert_eq!(demux(&[4]), Kind::Other);
        assert_eq!(demux(&[64]), Kind::Other);
        assert_eq!(demux(&[192]), Kind::Other);
        assert_eq!(demux(&[]), Kind::Other);
    }
}
