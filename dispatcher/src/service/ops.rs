//! Operations that move people or change a server's service: punt, move, drain,
//! maintenance windows, and call resolution's merges; and operators' conference control
//! (mute, kick, lock), which the conference's media server carries out. The admin API and
//! the registry (a server's own `punt`) both call these; neither calls the other.

use super::Service;
use crate::core::{PlaceError, Placement};
use crate::store::{MergeOrder, PuntOrder, PuntReply, RowKind};
use crate::{unix_ms, DispatcherError};
use protocol::{DispMsg, ErrorCode};
use std::time::{Duration, Instant};

/// How long an operator's punt of a conference on a server linked to another dispatcher
/// waits for that dispatcher to carry it out: it takes orders every 250 ms.
pub(crate) const REMOTE_PUNT_WAIT: Duration = Duration::from_secs(3);
/// How often the answer is looked for meanwhile.
const REPLY_POLL: Duration = Duration::from_millis(50);

/// What a punt did: the servers it moved between and how many participants were sent.
#[derive(Debug)]
pub(crate) struct Punted {
    pub from: String,
    pub to: String,
    pub dispatched: usize,
}

/// What a move did.
#[derive(Debug)]
pub(crate) struct Moved {
    pub user: String,
    pub server: String,
}

/// The `dispatch` order that sends `participant` of `conference` (on its current server)
/// to `to`, to join `to_conference` there.
fn order(
    conference: &str,
    participant: u32,
    to: &Placement,
    ticket: String,
    to_conference: &str,
) -> DispMsg {
    DispMsg::Dispatch {
        conference: conference.to_owned(),
        participant,
        addr: to.client_addr,
        ticket,
        to_conference: to_conference.to_owned(),
        ws: to.ws_url.clone(),
    }
}

/// Punts `conference` (seed 003): the tables pick the target and reserve its seats, and
/// the conference's current server is told to `dispatch` each participant there. Used by
/// the operator's punt and by a media server's own `punt` (high water, drain).
pub(crate) fn punt_conference(
    s: &Service,
    conference: &str,
    who: &str,
) -> Result<Punted, DispatcherError> {
    // A server without a link here cannot be told to dispatch anyone: say so before the
    // tables move the conference.
    let from = s.tables().conference(conference).map(|c| c.server.clone());
    if let Some(from) = from.filter(|f| !s.links().contains_key(f)) {
        return Err(DispatcherError::Conflict(format!(
            "media server {from} is not linked to this dispatcher; nobody can be dispatched"
        )));
    }
    let (punt, generation) = {
        let mut t = s.tables();
        let p = t.punt(
            Instant::now(),
            unix_ms(),
            conference,
            s.settings().ticket_ttl,
            who,
        )?;
        let g = t.server(&p.from).map(|srv| srv.generation).unwrap_or(0);
        (p, g)
    };
    let mut dispatched = 0;
    for (participant, name) in &punt.participants {
        let Some(ticket) = s.hand_out(&punt.to, conference, &punt.account, name, punt.mode) else {
            break;
        };
        let line = order(conference, *participant, &punt.to, ticket, conference);
        if s.send_to(&punt.from, generation, line) {
            dispatched += 1;
        }
    }
    if dispatched > 0 {
        // The store's placement follows the clients, or other dispatchers would keep
        // sending joins to the old server and call resolution would send them back.
        s.cluster.punted(conference, &punt.to.server);
    }
    Ok(Punted {
        from: punt.from,
        to: punt.to.server,
        dispatched,
    })
}

/// An operator's punt (the admin API): carried out here when the conference's server is
/// linked here; otherwise (several dispatchers on Redis) handed through the store to the
/// dispatcher it is linked to, whose answer is awaited for [`REMOTE_PUNT_WAIT`]. Whatever
/// cannot be done is an error: the store down, the other dispatcher silent, its refusal.
pub(crate) async fn punt(
    s: &Service,
    conference: &str,
    who: &str,
) -> Result<Punted, DispatcherError> {
    let known = s.tables().conference(conference).map(|c| c.server.clone());
    match known {
        Some(server) if s.links().contains_key(&server) => punt_conference(s, conference, who),
        _ if !s.cluster.store.shared() => punt_conference(s, conference, who),
        known => remote_punt(s, conference, known, who).await,
    }
}

/// [`punt`] of a conference on a server not linked here.
async fn remote_punt(
    s: &Service,
    conference: &str,
    known: Option<String>,
    who: &str,
) -> Result<Punted, DispatcherError> {
    let store = &s.cluster.store;
    let me = &s.settings().id;
    // Where it runs: where our table has it, else where the servers' rosters list it
    // (the side with the most participants).
    let server = match known {
        Some(server) => server,
        None => store
            .rows(RowKind::Roster)
            .await?
            .into_iter()
            .filter_map(|r| r.roster.get(conference).map(|n| (*n, r.id)))
            .max()
            .map(|(_, id)| id)
            .ok_or_else(|| PlaceError::UnknownConference(conference.to_owned()))?,
    };
    // Who it is linked to: its capacity row says, every 250 ms.
    let dispatcher = store
        .rows(RowKind::Capacity)
        .await?
        .into_iter()
        .find(|r| r.id == server)
        .map(|r| r.dispatcher)
        .ok_or_else(|| {
            DispatcherError::Conflict(format!(
                "media server {server} of conference {} is linked to no dispatcher",
                protocol::clip(conference)
            ))
        })?;
    if &dispatcher == me {
        // It has just linked here.
        return punt_conference(s, conference, who);
    }
    let reply = format!("{me}-{:016x}", rand::random::<u64>());
    let order = PuntOrder {
        conference: conference.to_owned(),
        server: server.clone(),
        dispatcher: dispatcher.clone(),
        by: who.to_owned(),
        reply: reply.clone(),
        expires_unix_ms: unix_ms() + REMOTE_PUNT_WAIT.as_millis() as u64,
    };
    store.push_punt(&order).await?;
    tracing::info!(conference, %server, %dispatcher, who, "punt handed to the server's dispatcher");
    let deadline = Instant::now() + REMOTE_PUNT_WAIT;
    let answer = loop {
        tokio::time::sleep(REPLY_POLL).await;
        if let Some(a) = store.reply(&reply).await? {
            break a;
        }
        if Instant::now() >= deadline {
            return Err(DispatcherError::NoAnswer(format!(
                "dispatcher {dispatcher}, which media server {server} is linked to, did not carry out the punt within {} s; the order is withdrawn",
                REMOTE_PUNT_WAIT.as_secs()
            )));
        }
    };
    if answer.status != 200 {
        return Err(DispatcherError::Remote {
            status: answer.status,
            text: format!("{dispatcher}: {}", answer.error),
        });
    }
    {
        // Our entry (a conference placed here on a remote server) no longer says where
        // it runs: the next join asks the store, which the punt moved to the target.
        let mut t = s.tables();
        t.forget_conference(&answer.from, conference);
        let detail = format!("to {} via {dispatcher}", answer.to);
        t.log_by(unix_ms(), "punt", &answer.from, conference, detail, who);
    }
    Ok(Punted {
        from: answer.from,
        to: answer.to,
        dispatched: answer.dispatched,
    })
}

/// Carries out a punt another dispatcher was asked for, for a server linked here, and
/// answers it in the store. The placement moves to the target before the answer, so the
/// asking dispatcher's next joins follow the clients.
pub(crate) async fn carry_punt(s: &Service, o: &PuntOrder) {
    if unix_ms() > o.expires_unix_ms {
        tracing::warn!(order = ?o, "punt order past its time dropped: the operator was told it was not done");
        return;
    }
    let refused = |status: u16, error: String| PuntReply {
        status,
        from: o.server.clone(),
        to: String::new(),
        dispatched: 0,
        error,
    };
    let hosted = s
        .tables()
        .conference(&o.conference)
        .map(|c| c.server.clone());
    let reply = if !s.links().contains_key(&o.server) {
        refused(
            409,
            format!(
                "media server {} is not linked to {}",
                o.server,
                s.settings().id
            ),
        )
    } else if hosted.as_deref() != Some(o.server.as_str()) {
        refused(
            404,
            format!(
                "no conference {} on media server {}",
                protocol::clip(&o.conference),
                o.server
            ),
        )
    } else {
        match punt_conference(s, &o.conference, &o.by) {
            Ok(p) => {
                if p.dispatched > 0 {
                    if let Err(e) = s.cluster.store.force(&o.conference, &p.to).await {
                        s.store_failed::<()>(e);
                    }
                }
                PuntReply {
                    status: 200,
                    from: p.from,
                    to: p.to,
                    dispatched: p.dispatched,
                    error: String::new(),
                }
            }
            Err(e) => refused(e.http_status(), e.to_string()),
        }
    };
    tracing::info!(order = ?o, status = reply.status, "punt order carried out");
    if let Err(e) = s.cluster.store.put_reply(&o.reply, &reply).await {
        s.store_failed::<()>(e);
    }
}

/// A media server's `punt`: only a conference it hosts can be moved, and a refusal (no
/// other server can take it) goes back as `error` so the server can retry later.
pub(crate) fn server_punt(s: &Service, id: &str, conference: &str) {
    let hosted = s
        .tables()
        .conference(conference)
        .is_some_and(|c| c.server == id);
    let refusal = if hosted {
        match punt_conference(s, conference, id) {
            Ok(p) => {
                tracing::info!(server = id, conference, to = %p.to, dispatched = p.dispatched, "server punted a conference");
                return;
            }
            Err(e) => (
                ErrorCode::NoCapacity,
                format!("punt {}: {e}", protocol::clip(conference)),
            ),
        }
    } else {
        (
            ErrorCode::NotFound,
            format!("punt {}: not hosted by {id}", protocol::clip(conference)),
        )
    };
    tracing::warn!(server = id, conference, reason = %refusal.1, "punt refused");
    s.send_to(
        id,
        s.generation_of(id),
        DispMsg::Error {
            code: refusal.0,
            text: refusal.1,
        },
    );
}

/// Seed 003's "send to the manager": participant `participant` of `conference` is sent
/// by its media server to the conference `to`, created where the dispatcher would create
/// any conference, in the source conference's mode.
pub(crate) fn move_user(
    s: &Service,
    conference: &str,
    participant: u32,
    to: &str,
    who: &str,
) -> Result<Moved, DispatcherError> {
    if to.is_empty() || to.len() > 128 || to.chars().any(char::is_control) {
        return Err(DispatcherError::BadRequest(
            "bad target conference name".into(),
        ));
    }
    let now = Instant::now();
    let unix = unix_ms();
    // The client rejoins with the mode it joined with, so the target is placed (or must
    // already run) in the source conference's mode.
    let (seat, generation, placement) = {
        let mut t = s.tables();
        let seat = t.participant(conference, participant)?;
        let generation = t
            .server(&seat.server)
            .map(|srv| srv.generation)
            .unwrap_or(0);
        if let Some(target) = t.conference(to).filter(|c| c.parsed_mode() != seat.mode) {
            return Err(DispatcherError::Conflict(format!(
                "{to} runs in {} mode, {conference} in {}",
                target.mode, seat.mode
            )));
        }
        let placement = t.place(
            now,
            unix,
            to,
            &seat.account,
            seat.mode,
            s.settings().ticket_ttl,
        )?;
        (seat, generation, placement)
    };
    let (name, from, account) = (seat.name, seat.server, seat.account);
    let ticket = s
        .hand_out(&placement, to, &account, &name, seat.mode)
        .ok_or_else(|| {
            DispatcherError::Conflict(format!("media server {} is unreachable", placement.server))
        })?;
    let line = order(conference, participant, &placement, ticket, to);
    if !s.send_to(&from, generation, line) {
        return Err(DispatcherError::Conflict(format!(
            "media server {from} is unreachable"
        )));
    }
    let detail = format!("{participant} {name} to {to} on {}", placement.server);
    s.tables()
        .log_by(unix, "move", &from, conference, detail, who);
    Ok(Moved {
        user: name,
        server: placement.server,
    })
}

/// An operator's conference control, carried out by the conference's media server as a
/// moderator's would be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Moderation {
    Mute { participant: u32, on: bool },
    Kick { participant: u32, reason: String },
    Lock { on: bool },
    Layout { layout: protocol::Layout },
    Record { on: bool },
}

impl Moderation {
    fn kind(&self) -> &'static str {
        match self {
            Moderation::Mute { on: true, .. } => "mute",
            Moderation::Mute { on: false, .. } => "unmute",
            Moderation::Kick { .. } => "kick",
            Moderation::Lock { on: true } => "lock",
            Moderation::Lock { on: false } => "unlock",
            Moderation::Layout { .. } => "layout",
            Moderation::Record { on: true } => "record",
            Moderation::Record { on: false } => "record-stop",
        }
    }
}

/// Sends an operator's mute, kick or lock to the server hosting `conference` (a mute or
/// kick: to the participant's own server, `at` when given, since a conference spread over
/// linked servers has an id per server) and logs it with the operator's name. Returns the
/// server.
pub(crate) fn moderate(
    s: &Service,
    conference: &str,
    action: Moderation,
    at: Option<&str>,
    who: &str,
) -> Result<String, DispatcherError> {
    let (server, generation, detail) = {
        let t = s.tables();
        let first = t
            .conference(conference)
            .map(|c| c.server.clone())
            .ok_or_else(|| PlaceError::UnknownConference(conference.to_owned()))?;
        let (detail, server) = match &action {
            Moderation::Mute { participant, .. } | Moderation::Kick { participant, .. } => {
                let seat = t.participant_at(conference, *participant, at)?;
                (format!("{participant} {}", seat.name), seat.server)
            }
            Moderation::Lock { .. } | Moderation::Record { .. } => (String::new(), first),
            Moderation::Layout { layout } => (layout.to_string(), first),
        };
        let generation = t.server(&server).map(|srv| srv.generation).unwrap_or(0);
        (server, generation, detail)
    };
    let operator = who.to_owned();
    let conf = conference.to_owned();
    let line = match &action {
        Moderation::Mute { participant, on } => DispMsg::Mute {
            conference: conf,
            participant: *participant,
            on: *on,
            operator,
        },
        Moderation::Kick {
            participant,
            reason,
        } => DispMsg::Kick {
            conference: conf,
            participant: *participant,
            operator,
            reason: reason.clone(),
        },
        Moderation::Lock { on } => DispMsg::Lock {
            conference: conf,
            on: *on,
            operator,
        },
        Moderation::Layout { layout } => DispMsg::Layout {
            conference: conf,
            layout: *layout,
            operator,
        },
        Moderation::Record { on } => DispMsg::Record {
            conference: conf,
            on: *on,
            operator,
        },
    };
    if !s.send_to(&server, generation, line) {
        return Err(DispatcherError::Conflict(format!(
            "media server {server} is not linked to this dispatcher"
        )));
    }
    s.tables()
        .log_by(unix_ms(), action.kind(), &server, conference, detail, who);
    Ok(server)
}

/// Drains (or undrains) server `id`: no new conferences go there.
pub(crate) fn set_drain(s: &Service, id: &str, on: bool, who: &str) -> Result<(), DispatcherError> {
    Ok(s.tables().set_drain(unix_ms(), id, on, who)?)
}

/// Sets (or, with `None`, clears) server `id`'s maintenance window, Unix seconds.
pub(crate) fn set_maintenance(
    s: &Service,
    id: &str,
    window: Option<(u64, u64)>,
    who: &str,
) -> Result<(), DispatcherError> {
    if let Some((start, end)) = window {
        if end <= start {
            return Err(DispatcherError::BadRequest(
                "end_unix must be after start_unix".into(),
            ));
        }
    }
    Ok(s.tables().set_maintenance(unix_ms(), id, window, who)?)
}

/// Carries out a merge order for a server linked here: each of its participants of the
/// conference is dispatched to the winning server, as a punt does.
pub(crate) async fn merge(s: &Service, o: &MergeOrder) {
    if !s.links().contains_key(&o.from) {
        // Meant for another dispatcher (say one left on our id), or the server left.
        tracing::warn!(order = ?o, "merge order for a server not linked here ignored");
        return;
    }
    let unix = unix_ms();
    let (to, from_generation, mode) = {
        let t = s.tables();
        let Some(srv) = t.server(&o.to) else {
            tracing::warn!(order = ?o, "merge target not in the capacity table");
            return;
        };
        let to = Placement {
            server: srv.id.clone(),
            client_addr: srv.client_addr,
            ws_url: srv.ws_url.clone(),
            generation: srv.generation,
            created: false,
            links: Vec::new(),
        };
        let from = t.server(&o.from).map(|x| x.generation).unwrap_or(0);
        let mode = t
            .conference(&o.conference)
            .map(|c| c.parsed_mode())
            .unwrap_or_default();
        (to, from, mode)
    };
    let mut sent = 0;
    for (participant, name, account) in s.cluster.roster_of(&o.from, &o.conference) {
        let Some(ticket) = s.hand_out(&to, &o.conference, &account, &name, mode) else {
            break;
        };
        let line = order(&o.conference, participant, &to, ticket, &o.conference);
        if s.send_to(&o.from, from_generation, line) {
            sent += 1;
        }
    }
    if sent == 0 {
        tracing::warn!(order = ?o, "merge order moved nobody; placement left as it was");
        return;
    }
    s.tables().move_conference(unix, &o.conference, &o.to);
    if let Err(e) = s.cluster.store.force(&o.conference, &o.to).await {
        s.store_failed::<()>(e);
    }
    tracing::info!(conference = %o.conference, from = %o.from, to = %o.to, dispatched = sent, "call resolution merged a duplicate conference");
}

impl From<PlaceError> for DispatcherError {
    fn from(e: PlaceError) -> Self {
        DispatcherError::Place(e)
    }
}
