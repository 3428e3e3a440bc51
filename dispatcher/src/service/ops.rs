//! Operations that move people or change a server's service: punt, move, drain,
//! maintenance windows, and call resolution's merges; and operators' conference control
//! (mute, kick, lock), which the conference's media server carries out. The admin API and
//! the registry (a server's own `punt`) both call these; neither calls the other.

use super::Service;
use crate::core::{PlaceError, Placement};
use crate::store::MergeOrder;
use crate::{unix_ms, DispatcherError};
use protocol::{DispMsg, ErrorCode};
use std::time::Instant;

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
            Err(e) => (ErrorCode::NoCapacity, format!("punt {conference}: {e}")),
        }
    } else {
        (
            ErrorCode::NotFound,
            format!("punt {conference}: not hosted by {id}"),
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
}

impl Moderation {
    fn kind(&self) -> &'static str {
        match self {
            Moderation::Mute { on: true, .. } => "mute",
            Moderation::Mute { on: false, .. } => "unmute",
            Moderation::Kick { .. } => "kick",
            Moderation::Lock { on: true } => "lock",
            Moderation::Lock { on: false } => "unlock",
        }
    }
}

/// Sends an operator's mute, kick or lock to the server hosting `conference` (the
/// participant must be in it) and logs it with the operator's name. Returns the server.
pub(crate) fn moderate(
    s: &Service,
    conference: &str,
    action: Moderation,
    who: &str,
) -> Result<String, DispatcherError> {
    let (server, generation, detail) = {
        let t = s.tables();
        let detail = match &action {
            Moderation::Mute { participant, .. } | Moderation::Kick { participant, .. } => {
                let seat = t.participant(conference, *participant)?;
                format!("{participant} {}", seat.name)
            }
            Moderation::Lock { .. } => String::new(),
        };
        let server = t
            .conference(conference)
            .map(|c| c.server.clone())
            .ok_or_else(|| PlaceError::UnknownConference(conference.to_owned()))?;
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
