//! `video = false`: an audio-only media server refuses video joins with a clear code and
//! still takes audio ones, so the dispatcher's video rationing has servers to prefer.

mod common;

use common::control::*;
use protocol::{ErrorCode, ServerMsg};
use testkit::harness::control::{ticket, Line};

/// Joins with `media` and returns the first accept or refusal.
fn first_answer(server: &Server, name: &str, media: &str) -> ServerMsg {
    let mut line = Line::connect(server.running.client_addr);
    let t = ticket(SECRET, "ao", "acct", name, &server.running.id);
    line.send(&format!(
        "join\tao\tacct\t{name}\tmode=reflect\tticket={t}\tmedia={media}"
    ));
    loop {
        let l = line.read().expect("server closed before answering");
        if let Ok(m @ (ServerMsg::Accept { .. } | ServerMsg::Reject { .. })) = ServerMsg::parse(&l)
        {
            return m;
        }
    }
}

#[test]
fn an_audio_only_server_refuses_video_and_takes_audio() {
    let server = Server::start_with(|s| s.video = false);
    match first_answer(&server, "vid", "audio,video") {
        ServerMsg::Reject { code, text } => {
            assert_eq!(code, ErrorCode::WrongState, "{text}");
            assert!(text.contains("audio only"), "{text}");
        }
        other => panic!("a video join was not refused: {other:?}"),
    }
    assert!(
        matches!(
            first_answer(&server, "aud", "audio"),
            ServerMsg::Accept { .. }
        ),
        "an audio join must still be accepted"
    );
}
