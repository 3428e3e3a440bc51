//! loadgen's WebRTC participants in a Janus VideoRoom (`--janus URL` with `--webrtc`): the
//! peer of the WebRTC fan-out comparison (issue 15). The same senders, receivers, SRTP and
//! counting run against both servers; only the signalling differs.
//!
//! Janus's HTTP API (`POST /janus`, `/janus/SESSION`, `/janus/SESSION/HANDLE`, long polls
//! on `GET /janus/SESSION`). Each participant has its own session and one VideoRoom
//! handle. In each conference participant 0 creates a room and publishes (an offer with
//! `setup:active`, so Janus answers `passive` and loadgen stays the DTLS client); every
//! other participant subscribes to it (Janus offers, loadgen answers `recvonly`). ICE is
//! the same nominating check as against the media server, so Janus must run with
//! `ice_lite = true`, as `benches/peers/webrtc/run.sh` configures it. Sessions get a
//! keepalive every 25 s, as janus.js sends, and are destroyed when the run ends.

use crate::config::LoadArgs;
use crate::control::{
    ice_and_dtls, join_each, open_socket, spawn_plane, Channel, Consent, ControlPlane,
    ControlReport, ControlStatus, Participant, Ready, Route, CONSENT_EVERY, JOIN_TIMEOUT,
};
use crate::BenchError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// One HTTP request to Janus (a long poll returns within 30 s by itself).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(35);
/// How often a session is kept alive (Janus drops it after 60 s of silence by default).
const KEEPALIVE_EVERY: Duration = Duration::from_secs(25);
/// Opus, as loadgen's offer and Janus's subscriber offer name it.
const OPUS_PT: u8 = 111;

/// Joins every participant into Janus VideoRoom rooms at `args.janus`.
pub fn join_all(
    args: &LoadArgs,
    run_id: &str,
) -> Result<(ControlPlane, Vec<Participant>), BenchError> {
    let base = args
        .janus
        .clone()
        .ok_or_else(|| BenchError::Args("--janus is required".into()))?;
    let plan = Plan {
        base: base.trim_end_matches('/').to_owned(),
        local: args
            .janus_local
            .ok_or_else(|| BenchError::Args("--janus needs --janus-local".into()))?,
        run_id: run_id.to_owned(),
        conferences: args.conferences,
        participants: args.participants,
        concurrency: args.join_concurrency,
    };
    spawn_plane(move |ready, stop, status| janus_main(plan, ready, stop, status))
}

struct Plan {
    base: String,
    local: IpAddr,
    run_id: String,
    conferences: u32,
    participants: u32,
    concurrency: usize,
}

/// Janus's HTTP API.
struct Api {
    http: Client<HttpConnector, Full<Bytes>>,
    base: String,
    transactions: AtomicU64,
}

impl Api {
    async fn call(&self, path: &str, body: Option<Value>) -> Result<Value, String> {
        let uri = format!("{}{path}", self.base);
        let req = match body {
            Some(mut b) => {
                let t = self.transactions.fetch_add(1, Ordering::Relaxed);
                b["transaction"] = json!(format!("lg{t}"));
                hyper::Request::post(&uri)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(b.to_string())))
            }
            None => hyper::Request::get(&uri).body(Full::new(Bytes::new())),
        }
        .map_err(|e| format!("{uri}: {e}"))?;
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(req))
            .await
            .map_err(|_| format!("{uri}: no answer within {REQUEST_TIMEOUT:?}"))?
            .map_err(|e| format!("{uri}: {e}"))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{uri}: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("{uri}: HTTP {status}"));
        }
        let v: Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("{uri}: not JSON: {e}"))?;
        if v["janus"] == "error" {
            return Err(format!("{uri}: Janus error {}", v["error"]));
        }
        Ok(v)
    }
}

/// One participant's session with its VideoRoom handle.
struct Session {
    api: Arc<Api>,
    id: u64,
    handle: u64,
}

impl Session {
    async fn open(api: &Arc<Api>) -> Result<Session, String> {
        let created = api.call("", Some(json!({"janus": "create"}))).await?;
        let id = created["data"]["id"]
            .as_u64()
            .ok_or("create: no session id")?;
        let attached = api
            .call(
                &format!("/{id}"),
                Some(json!({"janus": "attach", "plugin": "janus.plugin.videoroom"})),
            )
            .await?;
        let handle = attached["data"]["id"]
            .as_u64()
            .ok_or("attach: no handle id")?;
        Ok(Session {
            api: api.clone(),
            id,
            handle,
        })
    }

    /// Sends a VideoRoom request; a synchronous one returns its plugin data.
    async fn request(&self, body: Value, jsep: Option<Value>) -> Result<Value, String> {
        let mut msg = json!({"janus": "message", "body": body});
        if let Some(j) = jsep {
            msg["jsep"] = j;
        }
        let v = self
            .api
            .call(&format!("/{}/{}", self.id, self.handle), Some(msg))
            .await?;
        plugin_data(&v)
    }

    /// The next VideoRoom event with its JSEP, by long polls.
    async fn event(&self) -> Result<(Value, Option<Value>), String> {
        loop {
            let v = self
                .api
                .call(&format!("/{}?maxev=1", self.id), None)
                .await?;
            let v = match v {
                Value::Array(mut a) if !a.is_empty() => a.swap_remove(0),
                other => other,
            };
            match v["janus"].as_str() {
                Some("event") => return Ok((plugin_data(&v)?, v.get("jsep").cloned())),
                Some("hangup" | "detached") => return Err(format!("Janus hung up: {v}")),
                // keepalive, webrtcup, media, slowlink, trickle: not what we wait for.
                _ => {}
            }
        }
    }

    async fn keepalive(&self) -> Result<(), String> {
        self.api
            .call(
                &format!("/{}", self.id),
                Some(json!({"janus": "keepalive"})),
            )
            .await
            .map(drop)
    }

    async fn destroy(&self) {
        let _ = self
            .api
            .call(&format!("/{}", self.id), Some(json!({"janus": "destroy"})))
            .await;
    }
}

/// The plugin's data, or the error it carries.
fn plugin_data(v: &Value) -> Result<Value, String> {
    let d = &v["plugindata"]["data"];
    if let Some(code) = d["error_code"].as_u64() {
        return Err(format!("VideoRoom error {code}: {}", d["error"]));
    }
    Ok(d.clone())
}

/// What a joined participant keeps for the run.
struct Joined {
    part: Participant,
    session: Session,
    consent: Consent,
}

async fn janus_main(
    plan: Plan,
    ready: Ready,
    stop: oneshot::Receiver<()>,
    status: Arc<ControlStatus>,
) -> ControlReport {
    let api = Arc::new(Api {
        http: Client::builder(TokioExecutor::new()).build_http(),
        base: plan.base.clone(),
        transactions: AtomicU64::new(0),
    });
    let plan = Arc::new(plan);
    let mut joined: Vec<Joined> = Vec::new();
    // Publishers first: each subscriber needs its publisher's feed id.
    let publishers = wave(&plan, &api, &[], (0..plan.conferences).map(|c| (c, 0))).await;
    let mut publishers = match publishers {
        Ok(p) => p,
        Err(e) => return fail(ready, e, joined).await,
    };
    publishers.sort_by_key(|(j, _)| j.part.conf);
    let feeds: Vec<Feed> = publishers.iter().map(|(_, feed)| *feed).collect();
    joined.extend(publishers.into_iter().map(|(j, _)| j));
    let rest: Vec<(u32, u32)> = (0..plan.conferences)
        .flat_map(|c| (1..plan.participants).map(move |i| (c, i)))
        .collect();
    match wave(&plan, &api, &feeds, rest.into_iter()).await {
        Ok(subs) => joined.extend(subs.into_iter().map(|(j, _)| j)),
        Err(e) => return fail(ready, e, joined).await,
    }
    joined.sort_by_key(|j| (j.part.conf, j.part.index));
    let mut parts = Vec::with_capacity(joined.len());
    let mut held = Vec::with_capacity(joined.len());
    for j in joined {
        parts.push(j.part);
        held.push((j.session, j.consent));
    }
    status
        .in_conference
        .store(parts.len() as u32, Ordering::Relaxed);
    if ready.send(Ok(parts)).is_err() {
        return ControlReport::default();
    }
    hold(held, stop, status).await
}

async fn fail(ready: Ready, e: BenchError, joined: Vec<Joined>) -> ControlReport {
    let _ = ready.send(Err(e));
    for j in joined {
        j.session.destroy().await;
    }
    ControlReport::default()
}

/// A publisher's room and feed id.
type Feed = (u64, u64);

/// Joins `who` (conference, index) with at most `plan.concurrency` joins in flight. Index 0
/// publishes; the others subscribe to their conference's feed in `feeds`.
async fn wave(
    plan: &Arc<Plan>,
    api: &Arc<Api>,
    feeds: &[Feed],
    who: impl Iterator<Item = (u32, u32)>,
) -> Result<Vec<(Joined, Feed)>, BenchError> {
    let (joined, err) = join_each(plan.concurrency, who, |conf, index| {
        let (plan, api) = (plan.clone(), api.clone());
        let feed = feeds.get(conf as usize).copied();
        async move { join_one(&plan, &api, conf, index, feed).await }
    })
    .await;
    match err {
        None => Ok(joined),
        Some(e) => {
            for (j, _) in joined {
                j.session.destroy().await;
            }
            Err(e)
        }
    }
}

/// The SSRC participant `index` of conference `conf` publishes with.
fn ssrc_of(conf: u32, index: u32) -> u32 {
    0x4a00_0000 | (conf << 12) | (index & 0xfff)
}

/// One participant: a publisher (no `feed`) creates its room and publishes; a subscriber
/// subscribes to `feed`. Returns the participant and its feed id (publishers).
async fn join_one(
    plan: &Plan,
    api: &Arc<Api>,
    conf: u32,
    index: u32,
    feed: Option<Feed>,
) -> Result<(Joined, Feed), String> {
    let session = Session::open(api).await?;
    let ufrag = format!("j{}c{conf}p{index}", plan.run_id)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>();
    let peer = webrtc::client::Peer::new(&ufrag).map_err(|e| e.to_string())?;
    let ssrc = ssrc_of(conf, index);
    // Bound before the SDP, which names it as this peer's host candidate.
    let socket = open_socket(plan.local, SocketAddr::new(plan.local, 9))?;
    let host = socket.local_addr().map_err(|e| e.to_string())?;
    let (remote, feed_id) = match feed {
        None => {
            let room = session
                .request(
                    json!({"request": "create", "publishers": 1, "audiocodec": "opus",
                           "description": format!("loadgen {} {conf}", plan.run_id)}),
                    None,
                )
                .await?;
            let room = room["room"].as_u64().ok_or("create: no room id")?;
            let offer = sdp_text(&peer.publish_offer(ssrc, host));
            session
                .request(
                    json!({"request": "joinandconfigure", "room": room, "ptype": "publisher",
                           "display": ufrag, "audio": true, "video": false}),
                    Some(json!({"type": "offer", "sdp": offer})),
                )
                .await?;
            let (ev, jsep) = session.event().await?;
            let id = ev["id"].as_u64().ok_or("joined: no publisher id")?;
            (jsep_sdp(jsep, "answer")?, (room, id))
        }
        Some(feed) => {
            let offer = subscribe(&session, feed).await?;
            let audio = offer
                .media
                .iter()
                .find(|m| m.kind == "audio")
                .ok_or("Janus offered no audio")?;
            let answer =
                sdp_text(&peer.receive_answer(&audio.mid, audio.opus_pt.unwrap_or(OPUS_PT), host));
            session
                .request(
                    json!({"request": "start"}),
                    Some(json!({"type": "answer", "sdp": answer})),
                )
                .await?;
            (offer, feed)
        }
    };
    let server = *remote
        .udp_candidates
        .iter()
        .find(|a| a.is_ipv4() == plan.local.is_ipv4())
        .ok_or("Janus's SDP has no UDP candidate of the local address's family")?;
    let (keys, check) = ice_and_dtls(&peer, &socket, server, &remote).await?;
    let audio = Channel {
        server,
        ssrc,
        payload_type: OPUS_PT,
    };
    let consent = Consent {
        socket: socket.try_clone().map_err(|e| e.to_string())?,
        server,
        request: check,
    };
    let part = Participant {
        conf,
        index,
        socket,
        audio,
        video: None,
        route: Arc::new(Route::new(audio, None)),
        srtp: Some(keys),
    };
    Ok((
        Joined {
            part,
            session,
            consent,
        },
        feed_id,
    ))
}

/// Subscribes to `feed` and returns Janus's offer. The publisher becomes a feed once its
/// PeerConnection is up, a moment after its handshake; until then Janus says "no such
/// feed" (428), so the request is repeated.
async fn subscribe(session: &Session, (room, feed): Feed) -> Result<webrtc::sdp::Offer, String> {
    let body = json!({"request": "join", "ptype": "subscriber", "room": room,
                      "streams": [{"feed": feed}]});
    let started = Instant::now();
    loop {
        session.request(body.clone(), None).await?;
        match session.event().await {
            Ok((_, jsep)) => {
                return jsep_sdp(jsep, "offer");
            }
            Err(e) if e.contains("428") && started.elapsed() < JOIN_TIMEOUT => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The SDP of a JSEP of `kind`, parsed.
fn jsep_sdp(jsep: Option<Value>, kind: &str) -> Result<webrtc::sdp::Offer, String> {
    let jsep = jsep.ok_or_else(|| format!("Janus sent no {kind}"))?;
    if jsep["type"] != kind {
        return Err(format!(
            "Janus sent a {} where an {kind} was due",
            jsep["type"]
        ));
    }
    let sdp = jsep["sdp"].as_str().ok_or("JSEP without sdp")?;
    webrtc::sdp::Offer::parse(sdp).map_err(|e| e.to_string())
}

fn sdp_text(lines: &[String]) -> String {
    let mut s = lines.join("\r\n");
    s.push_str("\r\n");
    s
}

/// Keeps every session alive and consent fresh until `stop`, then destroys the sessions.
async fn hold(
    held: Vec<(Session, Consent)>,
    stop: oneshot::Receiver<()>,
    status: Arc<ControlStatus>,
) -> ControlReport {
    let mut tasks = tokio::task::JoinSet::new();
    let mut leave = Vec::new();
    for (session, consent) in held {
        let (ltx, mut lrx) = oneshot::channel::<()>();
        leave.push(ltx);
        let status = status.clone();
        tasks.spawn(async move {
            let mut ping = tokio::time::interval(CONSENT_EVERY);
            let mut keep = tokio::time::interval(KEEPALIVE_EVERY);
            keep.tick().await;
            loop {
                tokio::select! {
                    _ = &mut lrx => {
                        session.destroy().await;
                        return false;
                    }
                    _ = ping.tick() => {
                        let _ = consent.socket.send_to(&consent.request, consent.server);
                    }
                    _ = keep.tick() => {
                        if session.keepalive().await.is_err() {
                            status.in_conference.fetch_sub(1, Ordering::Relaxed);
                            let _ = lrx.await;
                            return true;
                        }
                    }
                }
            }
        });
    }
    let _ = stop.await;
    for l in leave {
        let _ = l.send(());
    }
    let mut report = ControlReport::default();
    while let Some(r) = tasks.join_next().await {
        if r.unwrap_or(false) {
            report.closed_early += 1;
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_errors_and_wrong_jsep_are_errors() {
        let ok = json!({"janus": "success", "plugindata": {"data": {"room": 5}}});
        assert_eq!(plugin_data(&ok).unwrap()["room"], 5);
        let refused = json!({"janus": "event",
            "plugindata": {"data": {"error_code": 428, "error": "No such feed"}}});
        let e = plugin_data(&refused).unwrap_err();
        assert!(e.contains("428") && e.contains("No such feed"), "{e}");
        assert!(jsep_sdp(None, "offer").is_err());
        let answer = json!({"type": "answer", "sdp": "v=0\r\n"});
        assert!(jsep_sdp(Some(answer), "offer")
            .unwrap_err()
            .contains("where an offer was due"));
        let junk = json!({"type": "offer", "sdp": "not sdp"});
        assert!(jsep_sdp(Some(junk), "offer").is_err());
    }

    #[test]
    fn each_participant_publishes_its_own_ssrc() {
        assert_ne!(ssrc_of(0, 0), ssrc_of(0, 1));
        assert_ne!(ssrc_of(1, 0), ssrc_of(0, 0));
        assert_eq!(sdp_text(&["v=0".into(), "s=-".into()]), "v=0\r\ns=-\r\n");
    }
}
