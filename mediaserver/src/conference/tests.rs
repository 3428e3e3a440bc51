//! The service against a worker whose command queue nobody drains: a full queue refuses
//! joins without leaving anything behind, is counted, and teardown waits for room.

use super::*;
use crate::worker::WorkerHandle;
use control::{Link, LinkConfig};
use mesh::Command;
use protocol::ticket::{self, Claims};
use protocol::{JoinOpts, MediaKind};
use std::sync::mpsc::Receiver;

const SECRET: &[u8] = b"test-secret";

fn service(queue: usize) -> (Conferences, Receiver<Command<MediaPath>>) {
    let settings = Settings::new(
        "ms-t".into(),
        SECRET.to_vec(),
        "127.0.0.1:9".parse().unwrap(),
    );
    let (worker, rx) = WorkerHandle::detached(0, queue);
    let (c, _notify) = Conferences::new(
        settings,
        "127.0.0.1:3451".parse().unwrap(),
        None,
        vec![worker],
    );
    (c, rx)
}

/// The server side of a loopback control connection, and its client socket.
async fn outbox() -> (control::Outbox, tokio::net::TcpStream) {
    let (Link { outbox, .. }, client) = Link::loopback(LinkConfig::client()).await.unwrap();
    (outbox, client)
}

fn opts(conference: &str, name: &str) -> JoinOpts {
    let claims = Claims {
        conference,
        account: "demo",
        user: name,
        server: "ms-t",
    };
    JoinOpts {
        ticket: Some(ticket::sign(SECRET, &claims, unix_now() + 60)),
        ..JoinOpts::default()
    }
}

fn join(
    c: &Conferences,
    out: &control::Outbox,
    conference: &str,
    name: &str,
) -> Result<Membership, ServerMsg> {
    let o = opts(conference, name);
    let req = JoinRequest {
        conference,
        account: "demo",
        name,
        opts: &o,
    };
    c.join(&req, out)
}

fn kinds(rx: &Receiver<Command<MediaPath>>) -> Vec<&'static str> {
    std::iter::from_fn(|| rx.try_recv().ok())
        .map(|cmd| match cmd {
            Command::CreateConference { .. } => "create",
            Command::AddParticipant { .. } => "add",
            Command::RemoveParticipant { .. } => "remove",
            Command::RemoveConference { .. } => "delete",
            _ => "other",
        })
        .collect()
}

#[tokio::test]
async fn a_full_worker_queue_refuses_joins_and_leaves_nothing_behind() {
    let (c, rx) = service(2);
    let (out_a, _a) = outbox().await;
    let ann = join(&c, &out_a, "xyz", "ann").expect("room for create + add");
    assert_eq!(c.counts(), (1, 1));
    // The queue holds two commands and nobody takes them.
    let (out_b, _b) = outbox().await;
    let e = join(&c, &out_b, "xyz", "bob").unwrap_err();
    assert!(
        matches!(
            e,
            ServerMsg::Reject {
                code: ErrorCode::NoCapacity,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(c.counts(), (1, 1), "no half-made member");
    let e = join(&c, &out_b, "other", "bob").unwrap_err();
    assert!(
        matches!(
            e,
            ServerMsg::Reject {
                code: ErrorCode::NoCapacity,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(c.counts(), (1, 1), "no room without its worker conference");
    assert_eq!(c.stats.joins_refused_busy.load(Ordering::Relaxed), 2);
    assert_eq!(c.stats.worker_queue_full.load(Ordering::Relaxed), 2);
    assert_eq!(kinds(&rx), ["create", "add"]);
    // With room again the same join succeeds, and the worker hears of it.
    let bob = join(&c, &out_b, "xyz", "bob").expect("queue drained");
    assert_eq!(c.counts(), (2, 1));
    assert_eq!(kinds(&rx), ["add"]);
    // Fill the queue, then leave: the removal is kept and sent once there is room.
    let (out_c, _c) = outbox().await;
    join(&c, &out_c, "third", "cat").unwrap();
    c.leave(&bob);
    assert_eq!(c.counts(), (2, 2));
    assert_eq!(kinds(&rx), ["create", "add"]);
    c.tick(Instant::now());
    assert_eq!(kinds(&rx), ["remove"]);
    assert_eq!(c.stats.commands_retried.load(Ordering::Relaxed), 1);
    c.leave(&ann);
    assert_eq!(kinds(&rx), ["remove", "delete"]);
}

/// A join with video, asking `vcodec` (or nothing).
fn join_video(
    c: &Conferences,
    out: &control::Outbox,
    name: &str,
    vcodec: Option<&str>,
) -> Result<Membership, ServerMsg> {
    let mut o = opts("vid", name);
    o.media = vec![MediaKind::Audio, MediaKind::Video];
    o.extra = vcodec
        .map(|v| vec![("vcodec".to_owned(), v.to_owned())])
        .unwrap_or_default();
    c.join(
        &JoinRequest {
            conference: "vid",
            account: "demo",
            name,
            opts: &o,
        },
        out,
    )
}

/// The room's video codec is the first video member's (a browser takes VP8 or H.264 and
/// prefers VP8), a member that names none gets it, and one that cannot take it keeps its
/// own (transcoded for).
#[tokio::test]
async fn a_room_keeps_the_video_codec_of_its_first_video_member() {
    let (c, _rx) = service(64);
    let (out, _keep) = outbox().await;
    let page = join_video(&c, &out, "page", Some("vp8,h264")).unwrap();
    assert_eq!(page.video_codec, Some("vp8"));
    // confclient --external-media --video, no --vcodec: the room's VP8.
    let ext = join_video(&c, &out, "ffmpeg", None).unwrap();
    assert_eq!(ext.video_codec, Some("vp8"));
    // A page that prefers H.264 but takes VP8 gets VP8.
    let other = join_video(&c, &out, "page2", Some("h264,vp8")).unwrap();
    assert_eq!(other.video_codec, Some("vp8"));
    // A sender that can only do H.264 joins with it: this server composites, so video is
    // transcoded between the two codecs.
    let h264 = join_video(&c, &out, "h264-only", Some("h264")).unwrap();
    assert_eq!(h264.video_codec, Some("h264"));
    // Unknown codecs are a bad request; a new room without vcodec= gets H.264.
    let e = join_video(&c, &out, "x", Some("av1")).unwrap_err();
    assert!(
        matches!(
            e,
            ServerMsg::Reject {
                code: ErrorCode::BadRequest,
                ..
            }
        ),
        "{e:?}"
    );
    let mut o = opts("fresh", "solo");
    o.media = vec![MediaKind::Audio, MediaKind::Video];
    let solo = c
        .join(
            &JoinRequest {
                conference: "fresh",
                account: "demo",
                name: "solo",
                opts: &o,
            },
            &out,
        )
        .unwrap();
    assert_eq!(solo.video_codec, Some("h264"));
}

/// `record on`: a plain participant is refused (403); a moderator on a server without a
/// recordings directory is refused (409) and nothing starts; with one, it starts once
/// (a second `record on` changes nothing) and stops.
#[tokio::test]
async fn record_needs_a_moderator_and_a_recordings_directory() {
    let (c, _rx) = service(64);
    let (out, _keep) = outbox().await;
    let plain = join(&c, &out, "rec", "pat").unwrap();
    let e = c.record(&plain, true).unwrap_err();
    assert!(
        matches!(
            e.line(),
            ServerMsg::Reject {
                code: ErrorCode::Forbidden,
                ..
            }
        ),
        "{:?}",
        e.line()
    );
    let claims = Claims {
        conference: "rec",
        account: "demo",
        user: "mod",
        server: "ms-t",
    };
    let mut o = opts("rec", "mod");
    o.ticket = Some(ticket::sign_as(
        SECRET,
        &claims,
        unix_now() + 60,
        protocol::Role::Moderator,
    ));
    let req = JoinRequest {
        conference: "rec",
        account: "demo",
        name: "mod",
        opts: &o,
    };
    let moderator = c.join(&req, &out).unwrap();
    let e = c.record(&moderator, true).unwrap_err();
    assert!(
        matches!(e.line(), ServerMsg::Reject { code: ErrorCode::WrongState, text } if text.contains("--recordings")),
        "{:?}",
        e.line()
    );
    assert!(c.rooms().get("rec").unwrap().recording.is_none());
}

#[tokio::test]
async fn record_on_starts_once_and_off_stops() {
    let dir = std::env::temp_dir().join(format!("ms-rec-{}", std::process::id()));
    let mut settings = Settings::new(
        "ms-t".into(),
        SECRET.to_vec(),
        "127.0.0.1:9".parse().unwrap(),
    );
    settings.recordings = Some(dir.clone());
    let (worker, _rx) = WorkerHandle::detached(0, 64);
    let (c, _notify) = Conferences::new(
        settings,
        "127.0.0.1:3451".parse().unwrap(),
        None,
        vec![worker],
    );
    let (out, _keep) = outbox().await;
    join(&c, &out, "rec2", "pat").unwrap();
    c.operator_record("rec2", true, "admin");
    let first = c
        .rooms()
        .get("rec2")
        .unwrap()
        .recording
        .as_ref()
        .unwrap()
        .file
        .clone();
    c.operator_record("rec2", true, "admin");
    let again = c
        .rooms()
        .get("rec2")
        .unwrap()
        .recording
        .as_ref()
        .unwrap()
        .file
        .clone();
    assert_eq!(first, again, "a second start changes nothing");
    // No video member: audio alone, into Ogg.
    assert_eq!(first.extension().and_then(|e| e.to_str()), Some("ogg"));
    c.operator_record("rec2", false, "admin");
    assert!(c.rooms().get("rec2").unwrap().recording.is_none());
    c.operator_record("rec2", false, "admin");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A link ticket opens one link: the same ticket again (replayed from the wire) is
/// refused, and so is one for another conference or peer.
#[test]
fn a_link_ticket_is_spent_by_its_first_use() {
    let (c, _rx) = service(16);
    let claims = Claims {
        conference: "town",
        account: protocol::cascade::LINK_ACCOUNT,
        user: "ms-2",
        server: "ms-t",
    };
    let t = ticket::sign(SECRET, &claims, unix_now() + 60);
    assert!(
        c.check_link_ticket("town", "ms-3", &t).is_err(),
        "another peer"
    );
    assert!(
        c.check_link_ticket("hall", "ms-2", &t).is_err(),
        "another conference"
    );
    c.check_link_ticket("town", "ms-2", &t)
        .expect("the first use");
    let again = c.check_link_ticket("town", "ms-2", &t).unwrap_err();
    assert!(again.to_string().contains("used already"), "{again}");
}
