//! The service against a worker whose command queue nobody drains: a full queue refuses
//! joins without leaving anything behind, is counted, and teardown waits for room.

use super::*;
use crate::worker::WorkerHandle;
use control::{Link, LinkConfig};
use mesh::Command;
use protocol::ticket::{self, Claims};
use protocol::JoinOpts;
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
