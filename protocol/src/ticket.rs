//! Will-call tickets (seed 003, Fig. 4): the dispatcher signs, the media server checks.
//!
//! A ticket is `EXPIRES.HEXMAC`: `EXPIRES` is a Unix time in seconds and `HEXMAC` is
//! HMAC-SHA256, keyed with the secret the dispatcher shares with its media servers, over
//! conference, account, user, server id and expiry. A ticket is good for one user of one
//! conference on one server until it expires.
//!
//! A moderator's ticket carries its role: `EXPIRES.moderator.HEXMAC`, with the role under
//! the MAC too, so a media server trusts only roles the dispatcher signed. A ticket without
//! a role (the form above) verifies as a plain participant's, and neither form can be
//! turned into the other without the secret.
//!
//! Every ticket signed here also carries a random nonce under the MAC,
//! `EXPIRES[.moderator].NONCE.HEXMAC` (`NONCE`: 16 hex digits), so that two tickets are
//! never equal, even for the same user in the same second: a media server takes each
//! ticket for one accepted join only, and tells them apart by their text. Tickets without
//! a nonce (from earlier dispatchers) still verify.

use crate::Role;
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

fn mac(
    secret: &[u8],
    c: &Claims<'_>,
    expires: u64,
    role: Role,
    nonce: Option<&str>,
) -> Hmac<Sha256> {
    // new_from_slice takes keys of any length for HMAC; the error arm cannot happen.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts any key length");
    // Fields are separated by a byte that names cannot contain, so "a"+"bc" != "ab"+"c".
    for part in [c.conference, c.account, c.user, c.server] {
        m.update(part.as_bytes());
        m.update(b"\n");
    }
    m.update(expires.to_string().as_bytes());
    if role != Role::Participant {
        // Only a granted role is covered, so a plain ticket keeps its old MAC.
        m.update(b"\nrole=");
        m.update(role.as_str().as_bytes());
    }
    if let Some(n) = nonce {
        m.update(b"\nnonce=");
        m.update(n.as_bytes());
    }
    m
}

/// Digits in a ticket's nonce.
const NONCE_DIGITS: usize = 16;

fn is_nonce(s: &str) -> bool {
    s.len() == NONCE_DIGITS && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Signs a participant's ticket valid until `expires` (Unix seconds).
pub fn sign(secret: &[u8], c: &Claims<'_>, expires: u64) -> String {
    sign_as(secret, c, expires, Role::Participant)
}

/// Signs a ticket valid until `expires` (Unix seconds) that grants `role`, with a fresh
/// random nonce: no two calls return the same ticket.
pub fn sign_as(secret: &[u8], c: &Claims<'_>, expires: u64, role: Role) -> String {
    sign_with_nonce(secret, c, expires, role, rand::random())
}

/// [`sign_as`] with a given nonce (tests that need the same ticket twice).
pub fn sign_with_nonce(
    secret: &[u8],
    c: &Claims<'_>,
    expires: u64,
    role: Role,
    nonce: u64,
) -> String {
    let nonce = format!("{nonce:0NONCE_DIGITS$x}");
    let tag = hex::encode(
        mac(secret, c, expires, role, Some(&nonce))
            .finalize()
            .into_bytes(),
    );
    match role {
        Role::Participant => format!("{expires}.{nonce}.{tag}"),
        r => format!("{expires}.{}.{nonce}.{tag}", r.as_str()),
    }
}

/// The role a ticket's role field names: only a granted role is ever written.
fn role_field(r: &str) -> Result<Role, TicketError> {
    match r.parse::<Role>() {
        // A participant's ticket never names its role.
        Ok(Role::Moderator) => Ok(Role::Moderator),
        _ => Err(TicketError::Malformed),
    }
}

/// The expiry a ticket claims, unchecked: it pairs a join with its `reserve`.
pub fn expiry(ticket: &str) -> Option<u64> {
    ticket.split_once('.')?.0.parse().ok()
}

/// Checks a ticket at Unix time `now`, whatever role it grants.
pub fn verify(secret: &[u8], ticket: &str, c: &Claims<'_>, now: u64) -> Result<(), TicketError> {
    verify_role(secret, ticket, c, now).map(|_| ())
}

/// Checks a ticket at Unix time `now` and returns the role it grants. The signature is
/// checked in constant time, and before the expiry so that a forged ticket is reported as
/// forged.
pub fn verify_role(
    secret: &[u8],
    ticket: &str,
    c: &Claims<'_>,
    now: u64,
) -> Result<Role, TicketError> {
    let mut parts = ticket.split('.');
    let fields: [Option<&str>; 5] = std::array::from_fn(|_| parts.next());
    let (exp, role, nonce, tag) = match fields {
        [Some(e), Some(t), None, ..] => (e, Role::Participant, None, t),
        [Some(e), Some(n), Some(t), None, _] if is_nonce(n) => (e, Role::Participant, Some(n), t),
        [Some(e), Some(r), Some(t), None, _] => (e, role_field(r)?, None, t),
        [Some(e), Some(r), Some(n), Some(t), None] if is_nonce(n) => {
            (e, role_field(r)?, Some(n), t)
        }
        _ => return Err(TicketError::Malformed),
    };
    let expires: u64 = exp.parse().map_err(|_| TicketError::Malformed)?;
    // Only the form the dispatcher writes: spent tickets are told apart by their text, so
    // `0EXPIRES`, `+EXPIRES` or an upper-case tag must not pass as another ticket.
    let lower_hex = |t: &str| t.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if exp != expires.to_string() || !lower_hex(tag) {
        return Err(TicketError::Malformed);
    }
    let tag = hex::decode(tag).map_err(|_| TicketError::Malformed)?;
    mac(secret, c, expires, role, nonce)
        .verify_slice(&tag)
        .map_err(|_| TicketError::Forged)?;
    if now > expires {
        return Err(TicketError::Expired);
    }
    Ok(role)
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
    fn only_the_signed_spelling_of_a_ticket_verifies() {
        let t = sign(b"secret", &C, 1000);
        let (head, tag) = t.rsplit_once('.').expect("a signed ticket has a tag");
        for other in [
            format!("0{t}"),
            format!("+{t}"),
            format!("{head}.{}", tag.to_ascii_uppercase()),
        ] {
            assert_eq!(
                verify(b"secret", &other, &C, 999),
                Err(TicketError::Malformed),
                "{other}"
            );
        }
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
    fn roles_are_signed_and_cannot_be_added_or_stripped() {
        let plain = sign(b"secret", &C, 1000);
        assert_eq!(verify_role(b"secret", &plain, &C, 0), Ok(Role::Participant));
        let m = sign_as(b"secret", &C, 1000, Role::Moderator);
        assert!(m.starts_with("1000.moderator."), "{m}");
        assert_eq!(verify_role(b"secret", &m, &C, 0), Ok(Role::Moderator));
        assert_eq!(verify(b"secret", &m, &C, 0), Ok(()));
        assert_eq!(expiry(&m), Some(1000));
        // The participant form signs as before the role existed.
        assert_eq!(
            sign_with_nonce(b"secret", &C, 1000, Role::Participant, 7),
            sign_with_nonce(b"secret", &C, 1000, Role::Participant, 7)
        );
        // Adding the role to a plain ticket, or stripping it from a moderator's, breaks it.
        let promoted = plain.replacen("1000.", "1000.moderator.", 1);
        assert!(promoted.split('.').count() == 4, "{promoted}");
        assert_eq!(
            verify_role(b"secret", &promoted, &C, 0),
            Err(TicketError::Forged)
        );
        let demoted = m.replacen("moderator.", "", 1);
        assert_eq!(
            verify_role(b"secret", &demoted, &C, 0),
            Err(TicketError::Forged)
        );
        for bad in ["1000.participant.00", "1000.admin.00", "1000..00"] {
            assert_eq!(
                verify_role(b"secret", bad, &C, 0),
                Err(TicketError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            verify_role(b"secret", &m, &C, 1001),
            Err(TicketError::Expired)
        );
    }

    /// A ticket signed before nonces existed: `EXPIRES[.moderator].MAC`.
    fn old_form(secret: &[u8], c: &Claims<'_>, expires: u64, role: Role) -> String {
        let tag = hex::encode(mac(secret, c, expires, role, None).finalize().into_bytes());
        match role {
            Role::Participant => format!("{expires}.{tag}"),
            r => format!("{expires}.{}.{tag}", r.as_str()),
        }
    }

    #[test]
    fn every_ticket_is_unique_and_its_nonce_is_signed() {
        let a = sign(b"secret", &C, 1000);
        let b = sign(b"secret", &C, 1000);
        assert_ne!(a, b, "same user, same second, two tickets");
        assert_eq!(a.split('.').count(), 3, "{a}");
        assert_eq!(verify(b"secret", &a, &C, 0), Ok(()));
        assert_eq!(verify(b"secret", &b, &C, 0), Ok(()));
        // Another nonce under the same MAC, or none, breaks it.
        let (exp, rest) = a.split_once('.').unwrap();
        let (_, tag) = rest.split_once('.').unwrap();
        let renonced = format!("{exp}.{}.{tag}", "0".repeat(16));
        assert_eq!(
            verify(b"secret", &renonced, &C, 0),
            Err(TicketError::Forged)
        );
        assert_eq!(
            verify(b"secret", &format!("{exp}.{tag}"), &C, 0),
            Err(TicketError::Forged)
        );
        let m = sign_as(b"secret", &C, 1000, Role::Moderator);
        assert_eq!(m.split('.').count(), 4, "{m}");
        assert_eq!(verify_role(b"secret", &m, &C, 0), Ok(Role::Moderator));
        // The user is under the MAC: A's ticket is no good for B.
        let bob = Claims { user: "bob", ..C };
        assert_eq!(verify(b"secret", &a, &bob, 0), Err(TicketError::Forged));
        // Tickets of earlier dispatchers, without a nonce, still verify.
        for role in [Role::Participant, Role::Moderator] {
            let t = old_form(b"secret", &C, 1000, role);
            assert_eq!(verify_role(b"secret", &t, &C, 0), Ok(role), "{t}");
        }
        for bad in [
            "1000.moderator.0123456789abcdef.00.00",
            "1000.0123456789abcdef.moderator.00",
            "1000.0123456789ABCDEF.00",
        ] {
            assert!(verify(b"secret", bad, &C, 0).is_err(), "{bad}");
        }
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
