//! `video = false`: an audio-only media server refuses video joins with a clear code and
//! still takes audio ones, so the dispatcher's video rationing has servers to prefer.

mod common;

use common::control::*;
use protocol::ticket::{self, Claims};
use protocol::{ErrorCode, ServerMsg};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Joins with `media` and returns the first accept or refusal.
fn first_answer(server: &Server, name: &str, media: &str) -> ServerMsg {
    let mut w = TcpStream::connect(server.running.client_addr).expect("connect");
    w.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(w.try_clone().unwrap());
    let claims = Claims {
        conference: "ao",
        account: "acct",
        user: name,
        server: &server.running.id,
    };
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let t = ticket::sign(SECRET, &claims, exp);
    let line = format!("join\tao\tacct\t{name}\tmode=reflect\tticket={t}\tmedia={media}\n");
    w.write_all(line.as_bytes()).unwrap();
    loop {
        let mut l = String::new();
        assert!(
            r.read_line(&mut l).unwrap() > 0,
            "server closed before answering"
        );
        match ServerMsg::parse(l.trim_end()) {
            Ok(m @ (ServerMsg::Accept { .. } | ServerMsg::Reject { .. })) => return m,
            _ => continue,
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
