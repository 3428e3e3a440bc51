//! The operators' capacity dashboard: one page, its script and its style, compiled into
//! the binary so it works on machines with no internet. The web client's `/join` page is
//! served the same way.

use axum::http::header;
use axum::response::IntoResponse;

pub(crate) async fn index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("../../assets/index.html"),
    )
}

pub(crate) async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../assets/app.js"),
    )
}

pub(crate) async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../assets/app.css"),
    )
}

/// The web client (`/join`): a browser joins a conference over WebRTC, through the same
/// control lines as every client.
pub(crate) async fn join_page() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("../../assets/join.html"),
    )
}

pub(crate) async fn join_script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../assets/join.js"),
    )
}

pub(crate) async fn join_style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../assets/join.css"),
    )
}
