use std::fmt;

/// Numeric codes carried by `error` and `reject` lines (see docs/protocol.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Wrong field count, bad number or bad value.
    BadRequest,
    /// The account code is unknown.
    UnknownAccount,
    /// `join` at a media server without a ticket, or with a forged one.
    BadTicket,
    /// The named conference or participant does not exist.
    NotFound,
    /// The verb is not part of the protocol for this link.
    UnknownVerb,
    /// The ticket's expiry has passed.
    TicketExpired,
    /// The ticket was already used for a join (a ticket is good for one accepted join),
    /// or its holder was kicked.
    TicketUsed,
    /// The message is valid but not now (e.g. `channel` before `join`).
    WrongState,
    /// The line is longer than [`crate::MAX_LINE`].
    LineTooLong,
    /// The line is not UTF-8.
    NotUtf8,
    /// The server failed internally.
    Internal,
    /// No media server can host the conference.
    NoCapacity,
    /// Nothing can be placed right now, but soon can: a media server is registering or
    /// restarting, or every server is briefly out of communication. The text starts with
    /// `retry after N ms`; see [`crate::ServerMsg::retry_after`].
    Retry,
    /// The account's customer already has its contracted maximum of simultaneous users.
    AccountFull,
    /// The server or this peer's IP already has as many connections as it allows.
    TooManyConnections,
    /// The peer was too slow: no `join`/`register` within the handshake timeout, or
    /// nothing at all within the idle timeout.
    Timeout,
    /// The conference is locked by a moderator: new joins are refused until it is unlocked.
    Locked,
    /// The request needs a role the sender does not have (a moderator verb from a plain
    /// participant, a wrong moderator PIN), or undoes a moderator's decision (unmuting
    /// oneself after a moderator's mute).
    Forbidden,
    /// The port speaks TLS and the peer sent plain text (or nothing): it must connect
    /// with TLS (`tls://`, `wss://`, `https://`).
    TlsRequired,
    /// Too many requests of this kind in a short time (a member's chat lines; joins from one
    /// address or for one account, the dispatcher's `join_rate_*` settings): this one was
    /// dropped, and the text says when to try again where that is known.
    RateLimited,
    /// A code this build does not know; kept so a newer peer's lines still parse.
    Other(u16),
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 20] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownAccount,
        ErrorCode::BadTicket,
        ErrorCode::NotFound,
        ErrorCode::UnknownVerb,
        ErrorCode::TicketExpired,
        ErrorCode::TicketUsed,
        ErrorCode::WrongState,
        ErrorCode::LineTooLong,
        ErrorCode::NotUtf8,
        ErrorCode::Internal,
        ErrorCode::NoCapacity,
        ErrorCode::Retry,
        ErrorCode::AccountFull,
        ErrorCode::TooManyConnections,
        ErrorCode::Timeout,
        ErrorCode::Locked,
        ErrorCode::Forbidden,
        ErrorCode::TlsRequired,
        ErrorCode::RateLimited,
    ];

    pub fn as_u16(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::UnknownAccount => 401,
            ErrorCode::BadTicket => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::UnknownVerb => 405,
            ErrorCode::TicketExpired => 408,
            // HTTP's "gone": the ticket was good once.
            ErrorCode::TicketUsed => 410,
            ErrorCode::WrongState => 409,
            ErrorCode::LineTooLong => 413,
            ErrorCode::NotUtf8 => 415,
            ErrorCode::Internal => 500,
            ErrorCode::NoCapacity => 503,
            // SIP's "temporarily unavailable": 503 stays "no media server exists".
            ErrorCode::Retry => 480,
            ErrorCode::AccountFull => 429,
            ErrorCode::TooManyConnections => 420,
            ErrorCode::Timeout => 421,
            ErrorCode::Locked => 423,
            ErrorCode::TlsRequired => 426,
            ErrorCode::Forbidden => 430,
            ErrorCode::RateLimited => 431,
            ErrorCode::Other(n) => n,
        }
    }

    pub fn from_u16(n: u16) -> ErrorCode {
        ErrorCode::ALL
            .into_iter()
            .find(|c| c.as_u16() == n)
            .unwrap_or(ErrorCode::Other(n))
    }

    /// Short stable name, for logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::UnknownAccount => "unknown-account",
            ErrorCode::BadTicket => "bad-ticket",
            ErrorCode::NotFound => "not-found",
            ErrorCode::UnknownVerb => "unknown-verb",
            ErrorCode::TicketExpired => "ticket-expired",
            ErrorCode::TicketUsed => "ticket-used",
            ErrorCode::WrongState => "wrong-state",
            ErrorCode::LineTooLong => "line-too-long",
            ErrorCode::NotUtf8 => "not-utf8",
            ErrorCode::Internal => "internal",
            ErrorCode::NoCapacity => "no-capacity",
            ErrorCode::Retry => "retry",
            ErrorCode::AccountFull => "account-full",
            ErrorCode::TooManyConnections => "too-many-connections",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Locked => "locked",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TlsRequired => "tls-required",
            ErrorCode::RateLimited => "rate-limited",
            ErrorCode::Other(_) => "other",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_u16())
    }
}

/// An `error` line with `code` and `text`, LF included: the form every link's codec
/// (client and registry alike) writes, for the connection layer to send before it closes a
/// connection it refuses.
pub fn error_line(code: ErrorCode, text: &str) -> String {
    crate::ServerMsg::Error {
        code,
        text: text.to_owned(),
    }
    .encode()
}
