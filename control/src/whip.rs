//! What the dispatcher's and the media server's WHIP and WHEP routes (RFC 9725) share: the
//! CORS policy that lets pages on other origins publish and watch, the HTTP status of each
//! protocol error code, the bearer token, and the content types.

use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use protocol::{ErrorCode, Mode, ServerMsg};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Which of the two protocols a route speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Ingest: the client sends.
    Whip,
    /// Egress: the client watches the speaker.
    Whep,
}

impl Kind {
    /// The path's first segment.
    pub fn path(self) -> &'static str {
        match self {
            Kind::Whip => "whip",
            Kind::Whep => "whep",
        }
    }

    /// Whether the client publishes.
    pub fn publishes(self) -> bool {
        self == Kind::Whip
    }
}

/// The query's `mode=`: `None` when absent, the `reject` to answer when it names no mode.
pub fn mode(asked: Option<&str>) -> Result<Option<Mode>, ServerMsg> {
    asked
        .map(|m| {
            m.parse::<Mode>().map_err(|()| {
                ServerMsg::reject(ErrorCode::BadRequest, "mode= is reflect, mix or composite")
            })
        })
        .transpose()
}

/// An offer or an answer.
pub const SDP: &str = "application/sdp";
/// A `PATCH` with trickled candidates (RFC 8840).
pub const TRICKLE: &str = "application/trickle-ice-sdpfrag";

/// Any origin may publish and watch: the bearer token, not the page's origin, is what
/// admits a client. The answer's `Location` must be readable by the page, so it is exposed.
pub fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_methods([Method::POST, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
        ])
        .expose_headers([
            header::LOCATION,
            header::ETAG,
            header::LINK,
            HeaderName::from_static("accept-patch"),
        ])
        .max_age(std::time::Duration::from_secs(600))
}

/// The HTTP status for a refusal with protocol code `code`.
pub fn status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest | ErrorCode::LineTooLong | ErrorCode::UnknownVerb => {
            StatusCode::BAD_REQUEST
        }
        ErrorCode::UnknownAccount | ErrorCode::BadTicket | ErrorCode::TicketExpired => {
            StatusCode::UNAUTHORIZED
        }
        ErrorCode::TicketUsed | ErrorCode::Forbidden | ErrorCode::Locked => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::WrongState => StatusCode::CONFLICT,
        ErrorCode::NotUtf8 => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::AccountFull | ErrorCode::RateLimited | ErrorCode::TooManyConnections => {
            StatusCode::TOO_MANY_REQUESTS
        }
        ErrorCode::NoCapacity | ErrorCode::Retry | ErrorCode::Timeout => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ErrorCode::TlsRequired => StatusCode::UPGRADE_REQUIRED,
        ErrorCode::Internal | ErrorCode::Other(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A refusal: the status for `code` and `text` as plain text, with `Retry-After` when the
/// text says when (`retry after N ms`).
pub fn refuse(code: ErrorCode, text: &str) -> Response {
    let mut r = (status(code), format!("{} {text}\n", code.as_u16())).into_response();
    let retry = text
        .strip_prefix("retry after ")
        .and_then(|t| t.split(' ').next())
        .and_then(|ms| ms.parse::<u64>().ok());
    if let Some(ms) = retry {
        let secs = ms.div_ceil(1000).max(1).to_string();
        if let Ok(v) = HeaderValue::from_str(&secs) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

/// A body of the wrong type: `415`, with `Accept-Post` (an offer) or `Accept-Patch`
/// (trickled candidates) naming the type wanted.
pub fn wrong_type(want: &'static str) -> Response {
    let mut r = refuse(
        ErrorCode::NotUtf8,
        &format!("the body must be of type {want}"),
    );
    let name = if want == SDP {
        "accept-post"
    } else {
        "accept-patch"
    };
    r.headers_mut().insert(
        HeaderName::from_static(name),
        HeaderValue::from_static(want),
    );
    r
}

/// The refusal a `reject` or `error` line stands for.
pub fn refuse_msg(msg: &ServerMsg) -> Response {
    match msg {
        ServerMsg::Reject { code, text } | ServerMsg::Error { code, text } => refuse(*code, text),
        other => refuse(
            ErrorCode::Internal,
            &format!("unexpected reply: {}", other.encode().trim_end()),
        ),
    }
}

/// `s` as one path segment (a conference name in `/whip/{conference}`).
pub fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// What may not stand bare in a path segment: all but RFC 3986's unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The bearer token of `Authorization: Bearer T`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether the request's body is of content type `want` (parameters ignored).
pub fn is(headers: &HeaderMap, want: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_content_type() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  demo "),
        );
        assert_eq!(bearer(&h), Some("demo"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic eA=="),
        );
        assert_eq!(bearer(&h), None);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/SDP; charset=utf-8"),
        );
        assert!(is(&h, SDP));
        assert!(!is(&h, TRICKLE));
    }

    #[test]
    fn refusals_carry_their_status_and_when_to_retry() {
        let r = refuse(ErrorCode::Retry, "retry after 1500 ms: registering");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        assert_eq!(status(ErrorCode::BadTicket), StatusCode::UNAUTHORIZED);
        assert_eq!(status(ErrorCode::Locked), StatusCode::FORBIDDEN);
        assert_eq!(segment("room-1"), "room-1");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        assert_eq!(mode(None), Ok(None));
        assert_eq!(mode(Some("mix")), Ok(Some(Mode::Mix)));
        assert!(mode(Some("loud")).is_err());
    }
}
