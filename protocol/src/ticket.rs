//! Will-call tickets (seed 003, Fig. 4): the dispatcher signs, the media server checks.
//!
//! A ticket is `EXPIRES.HEXMAC`: `EXPIRES` is a Unix time in seconds and `HEXMAC` is
//! HMAC-SHA256, keyed with the secret the dispatcher shares with its media servers, over
//! conference, account, user, server id and expiry. A ticket is good for one user of one
//! conference on one server until it expires.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a ticket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("ticket is malformed")]
    Malformed,
    #[error("ticket signature does not match")]
    Forged,
    #[error("ticket has expired")]
    Expired,
}

impl TicketError {
    /// The wire code for a `reject`.
    pub fn code(self) -> crate::ErrorCode {
        match self {
            TicketError::Expired => crate::ErrorCode::TicketExpired,
            TicketError::Malformed | TicketError::Forged => crate::ErrorCode::BadTicket,
        }
    }
}

/// What a ticket vouches for.
#[derive(Debug, Clone, Copy)]
pub struct Claims<'a> {
    pub conference: &'a str,
    pub account: &'a str,
    pub user: &'a str,
    pub server: &'a str,
}

fn mac(secret: &[u8], c: &Claims<'_>, expires: u64) -> Hmac<Sha256> {
    // new_from_slice takes keys of any length for HMAC; the error arm cannot happen.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts any key length");
    // Fields are separated by a byte that names cannot contain, so "a"+"bc" != "ab"+"c".
    for part in [c.conference, c.account, c.user, c.server] {
        m.update(part.as_bytes());
        m.update(b"\n");
    }
    m.update(expires.to_string().as_bytes());
    m
}

/// Signs a ticket valid until `expires` (Unix seconds).
pub fn sign(secret: &[u8], c: &Claims<'_>, expires: u64) -> String {
    let tag = mac(secret, c, expires).finalize().into_bytes();
    format!("{expires}.{}", hex::encode(tag))
}

/// The expiry a ticket claims, unchecked: it pairs a join with its `reserve`.
pub fn expiry(ticket: &str) -> Option<u64> {
    ticket.split_once('.')?.0.parse().ok()
}

/// Checks a ticket at Unix time `now`. The signature is checked in constant time, and
/// before the expiry so that a forged ticket is reported as forged.
pub fn verify(secret: &[u8], ticket: &str, c: &Claims<'_>, now: u64) -> Result<(), TicketError> {
    let (exp, tag) = ticket.split_once('.').ok_or(TicketError::Malformed)?;
    let expires: u64 = exp.parse().map_err(|_| TicketError::Malformed)?;
    let tag = hex::decode(tag).map_err(|_| TicketError::Malformed)?;
    mac(secret, c, expires)
        .verify_slice(&tag)
        .map_err(|_| TicketError::Forged)?;
    if now > expires {
        return Err(TicketError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: Claims<'static> = Claims {
        conference: "xyz",
        account: "demo",
        user: "ann",
        server: "ms-1",
    };

    #[test]
    fn good_ticket_verifies() {
        let t = sign(b"secret", &C, 1000);
        assert_eq!(verify(b"secret", &t, &C, 999), Ok(()));
        assert_eq!(verify(b"secret", &t, &C, 1000), Ok(()));
    }

    #[test]
    fn expiry_is_readable() {
        assert_eq!(expiry(&sign(b"k", &C, 1234)), Some(1234));
        assert_eq!(expiry("nope"), None);
    }

    #[test]
    fn expired_ticket_is_refused() {
        let t = sign(b"secret", &C, 1000);
        assert_eq!(verify(b"secret", &t, &C, 1001), Err(TicketError::Expired));
    }

    #[test]
    fn forged_tickets_are_refused() {
        let t = sign(b"secret", &C, 1000);
        assert_eq!(verify(b"other", &t, &C, 0), Err(TicketError::Forged));
        let other_user = Claims { user: "bob", ..C };
        assert_eq!(
            verify(b"secret", &t, &other_user, 0),
            Err(TicketError::Forged)
        );
        let other_server = Claims {
            server: "ms-2",
            ..C
        };
        assert_eq!(
            verify(b"secret", &t, &other_server, 0),
            Err(TicketError::Forged)
        );
        // Moving the expiry forward breaks the signature.
        let stretched = t.replacen("1000", "9999", 1);
        assert_eq!(
            verify(b"secret", &stretched, &C, 0),
            Err(TicketError::Forged)
        );
    }

    #[test]
    fn malformed_tickets_are_refused() {
        for t in ["", "abc", "12.zz", ".00", "x.00"] {
            assert_eq!(
                verify(b"secret", t, &C, 0),
                Err(TicketError::Malformed),
                "{t}"
            );
        }
    }
}
