//! `GET /api/webrtc/ice-servers?account=A`: the TURN servers a browser may relay through,
//! with credentials for this account that expire (the TURN REST scheme that coturn's
//! `use-auth-secret` checks: user `EXPIRY:ACCOUNT`, password
//! base64(HMAC-SHA1(secret, user))). The web client asks before each offer. No TURN
//! configured: an empty list, and browsers connect directly as before.

use crate::Service;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Deserialize)]
pub(crate) struct Ask {
    account: String,
}

/// The credential pair for `account`, valid until `expiry` (Unix seconds).
pub(crate) fn credentials(secret: &str, account: &str, expiry: u64) -> (String, String) {
    let user = format!("{expiry}:{account}");
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(user.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (user, password)
}

pub(crate) async fn ice_servers(
    State(s): State<Arc<Service>>,
    Query(ask): Query<Ask>,
) -> impl IntoResponse {
    let settings = s.settings();
    // Credentials for known accounts only: a stranger gets no relay.
    if !settings.accounts.iter().any(|a| a.code == ask.account) {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "unknown account" })),
        );
    }
    let turn = &settings.turn;
    let servers = match (&turn.secret, turn.urls.is_empty()) {
        (Some(secret), false) => {
            let expiry = crate::unix_ms() / 1000 + turn.ttl.as_secs();
            let (username, credential) = credentials(secret, &ask.account, expiry);
            vec![json!({ "urls": turn.urls, "username": username, "credential": credential })]
        }
        _ => Vec::new(),
    };
    (
        StatusCode::OK,
        Json(json!({ "iceServers": servers, "ttl": turn.ttl.as_secs() })),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// coturn's own check (`turnserver --use-auth-secret`): the password is the base64 of
    /// HMAC-SHA1 over the user name, keyed with the secret. RFC 2202 test case 2's key and
    /// data give its known digest.
    #[test]
    fn credentials_follow_the_turn_rest_scheme() {
        let (user, pass) = credentials("key", "demo", 1_700_000_000);
        assert_eq!(user, "1700000000:demo");
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        let raw = base64::engine::general_purpose::STANDARD
            .decode(pass)
            .unwrap();
        assert_eq!(raw.len(), 20);
    }
}
