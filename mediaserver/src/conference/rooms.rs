//! The conference service's book of the rooms this server hosts: who is in each, on which
//! worker it runs, and which clients the dispatcher said are on their way. Only the service
//! (`super`) changes it.

use control::Outbox;
use protocol::{Actor, CostModel, MediaKind, Mode, MsMsg, Quality, Role, ServerMsg};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// A joined client.
pub(super) struct Member {
    pub(super) name: String,
    pub(super) account: String,
    /// Lines to this member's control connection (bounded: a member that does not read is
    /// disconnected by the connection layer, never waited for).
    pub(super) outbox: Outbox,
    /// Joined with `media=audio,video`: charged at the video rate.
    pub(super) video: bool,
    /// The join's `domain=` (the dispatcher's tenant map reads it), when it is a name.
    pub(super) domain: Option<String>,
    /// When we accepted it, Unix ms: a dispatcher that learns of it from a roster replay
    /// bills the stay from then.
    pub(super) joined_unix_ms: u64,
    /// As its ticket says: the dispatcher signs the role.
    pub(super) role: Role,
    /// The ticket it joined with, revoked if it is kicked.
    pub(super) ticket: String,
    /// Muted itself; it may unmute itself.
    pub(super) self_muted: bool,
    /// Muted by a moderator or an operator (who): only they can lift it.
    pub(super) hard_muted: Option<Actor>,
    /// Its hand is up (it asked the moderators to speak).
    pub(super) raised: bool,
    /// A browser's receive slots, by mid, in the order of its session's slot table.
    pub(super) slot_mids: Vec<String>,
    /// A WHEP viewer's session (our ufrag): its slots follow the dominant speaker.
    pub(super) follows: Option<String>,
    pub(super) chat: ChatBucket,
    /// The SSRCs it sends with, as linked servers are told.
    pub(super) ssrc: u32,
    pub(super) video_ssrc: Option<u32>,
    /// Its lower simulcast encodings' SSRCs, lowest first (the top one is `video_ssrc`).
    pub(super) simulcast: Vec<u32>,
    /// The worker part of the room it is in (0: the room's first worker).
    pub(super) shard: usize,
}

impl Member {
    /// Whether its audio is held back, for whichever reason.
    pub(super) fn muted(&self) -> bool {
        self.self_muted || self.hard_muted.is_some()
    }

    pub(super) fn is_moderator(&self) -> bool {
        self.role == Role::Moderator
    }

    /// The line that tells a linked server about this member (our id `id`).
    pub(super) fn link_line(&self, id: u32) -> protocol::LinkMsg {
        protocol::LinkMsg::Member {
            id,
            name: self.name.clone(),
            audio_ssrc: self.ssrc,
            video_ssrc: self.video_ssrc,
        }
    }

    /// The line that tells a linked server about this member's simulcast encodings, when
    /// it has any.
    pub(super) fn simulcast_line(&self, id: u32) -> Option<protocol::LinkMsg> {
        (!self.simulcast.is_empty()).then(|| protocol::LinkMsg::Simulcast {
            id,
            layers: self.simulcast.clone(),
        })
    }
}

/// A member's chat allowance, a token bucket: a person typing is never held back, a flood
/// is cut at the rate, and the flooder is told once per flood rather than once per line.
#[derive(Debug, Clone)]
pub(super) struct ChatBucket {
    tokens: f64,
    last: Instant,
    /// A refusal went out since the last line that passed.
    told: bool,
}

impl ChatBucket {
    pub(super) fn new(burst: u32, now: Instant) -> Self {
        ChatBucket {
            tokens: f64::from(burst),
            last: now,
            told: false,
        }
    }

    /// Takes one line at `now`: `Ok` when it may pass; `Err(true)` for the first refusal
    /// of a flood (answer it), `Err(false)` for the rest (drop them quietly).
    pub(super) fn take(&mut self, now: Instant, rate: f64, burst: u32) -> Result<(), bool> {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * rate).min(f64::from(burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.told = false;
            return Ok(());
        }
        Err(!std::mem::replace(&mut self.told, true))
    }
}

/// One conference.
pub(super) struct Room {
    conf: mesh::ConfId,
    worker: usize,
    mode: Mode,
    members: BTreeMap<u32, Member>,
    /// (user, ticket expiry in Unix seconds) from `reserve`, until that user joins.
    reservations: Vec<(String, u64)>,
    /// Joins whose `reserve` has not arrived yet: the registry link can be slower than
    /// the client. The late `reserve` is matched here instead of lingering.
    early_joins: Vec<(String, u64)>,
    /// The last `quality` light sent for each member.
    quality: HashMap<u32, Quality>,
    /// Locked by a moderator or an operator (who): new joins are refused, moderators'
    /// excepted.
    locked: Option<Actor>,
    /// The dominant speaker last announced.
    dominant: Option<u32>,
    /// Members whose talk run is on (the last `speaking` said so): a newcomer is told.
    speaking: std::collections::BTreeSet<u32>,
    /// The video codec of the room, set by its first video member (see `join`).
    video_codec: Option<&'static str>,
    /// A composite conference's layout and speaker, at the compositor service.
    pub(super) composite: Option<crate::composite::Control>,
    /// The switch its path's recording tap is started and stopped through.
    pub(super) tap: Option<std::sync::mpsc::SyncSender<crate::path::PathCmd>>,
    /// The recording running now, and a reflect or mix room's composite made for it.
    pub(super) recording: Option<crate::recording::Recording>,
    pub(super) recording_composite: Option<crate::composite::Control>,
    /// Cascading: the servers this room is linked with, by id.
    pub(super) links: BTreeMap<String, super::links::RoomLink>,
    /// Spread over workers: the room's parts on other workers (shard `i + 1`), and the
    /// ends linking the parts pairwise.
    pub(super) shards: Vec<(usize, mesh::ConfId)>,
    pub(super) shard_ends: Vec<super::shards::ShardEnd>,
}

impl Room {
    pub(super) fn new(conf: mesh::ConfId, worker: usize, mode: Mode) -> Room {
        Room {
            conf,
            worker,
            mode,
            members: BTreeMap::new(),
            reservations: Vec::new(),
            early_joins: Vec::new(),
            quality: HashMap::new(),
            locked: None,
            dominant: None,
            speaking: Default::default(),
            video_codec: None,
            composite: None,
            tap: None,
            recording: None,
            recording_composite: None,
            links: BTreeMap::new(),
            shards: Vec::new(),
            shard_ends: Vec::new(),
        }
    }

    pub(super) fn video_codec(&self) -> Option<&'static str> {
        self.video_codec
    }

    /// The first video member sets the room's codec; later ones get it.
    pub(super) fn set_video_codec(&mut self, codec: &'static str) {
        self.video_codec.get_or_insert(codec);
    }

    /// Tells the recording, when one runs (its sidecar).
    fn to_recording(&self, msg: impl FnOnce(Instant) -> crate::recording::RecMsg) {
        if let Some(r) = &self.recording {
            r.send(msg(Instant::now()));
        }
    }

    /// Records a talk run starting or ending.
    pub(super) fn set_speaking(&mut self, participant: u32, on: bool) {
        self.to_recording(|at| crate::recording::RecMsg::Speaking {
            at,
            participant,
            on,
        });
        if on && self.members.contains_key(&participant) {
            self.speaking.insert(participant);
        } else {
            self.speaking.remove(&participant);
        }
    }

    /// The members talking now.
    pub(super) fn speaking(&self) -> impl Iterator<Item = u32> + '_ {
        self.speaking.iter().copied()
    }

    /// Records the dominant speaker; true when it changed (and is a member).
    pub(super) fn set_dominant(&mut self, participant: u32) -> bool {
        self.members.contains_key(&participant)
            && self.dominant.replace(participant) != Some(participant)
    }

    pub(super) fn dominant(&self) -> Option<u32> {
        self.dominant.filter(|p| self.members.contains_key(p))
    }

    /// Sends several lines to every member, together (one write per member when its
    /// connection keeps up).
    pub(super) fn broadcast_lines(&self, lines: &[bytes::Bytes]) {
        for m in self.members.values() {
            for l in lines {
                if !m.outbox.send(l.clone()) {
                    break;
                }
            }
        }
    }

    /// Who locked the room, if it is locked.
    pub(super) fn locked(&self) -> Option<Actor> {
        self.locked
    }

    pub(super) fn set_locked(&mut self, by: Option<Actor>) {
        self.locked = by;
    }

    pub(super) fn member_mut(&mut self, id: u32) -> Option<&mut Member> {
        self.members.get_mut(&id)
    }

    pub(super) fn members_mut(&mut self) -> impl Iterator<Item = (&u32, &mut Member)> {
        self.members.iter_mut()
    }

    /// Sends a line to the moderators and to `also` (say, the member it is about).
    pub(super) fn to_moderators(&self, msg: &ServerMsg, also: Option<u32>) {
        let line = bytes::Bytes::from(msg.encode());
        for (id, m) in &self.members {
            if m.is_moderator() || Some(*id) == also {
                m.outbox.send(line.clone());
            }
        }
    }

    pub(super) fn conf(&self) -> mesh::ConfId {
        self.conf
    }

    pub(super) fn worker(&self) -> usize {
        self.worker
    }

    /// A linked server's member mirrored here as `local`: (that server, its id there).
    pub(super) fn mirror_origin(&self, local: u32) -> Option<(String, u32)> {
        self.links
            .iter()
            .find_map(|(peer, l)| l.mirror_of(local).map(|id| (peer.clone(), id)))
    }

    /// Every (worker, conf) the room runs on, the first worker's first.
    pub(super) fn places(&self) -> Vec<(usize, mesh::ConfId)> {
        std::iter::once((self.worker, self.conf))
            .chain(self.shards.iter().copied())
            .collect()
    }

    /// Where part `shard` of the room runs.
    pub(super) fn place(&self, shard: usize) -> (usize, mesh::ConfId) {
        match shard.checked_sub(1).and_then(|i| self.shards.get(i)) {
            Some(&p) => p,
            None => (self.worker, self.conf),
        }
    }

    /// The part of the room member `id` is in (0 for anyone else).
    pub(super) fn home(&self, id: u32) -> usize {
        self.members.get(&id).map_or(0, |m| m.shard)
    }

    /// Which part of the room `conf` on `worker` is.
    pub(super) fn shard_at(&self, worker: usize, conf: mesh::ConfId) -> Option<usize> {
        // Looked up for every mesh event, across rooms: no allocation.
        if (self.worker, self.conf) == (worker, conf) {
            return Some(0);
        }
        self.shards
            .iter()
            .position(|&p| p == (worker, conf))
            .map(|i| i + 1)
    }

    /// Members per part.
    pub(super) fn shard_sizes(&self) -> Vec<usize> {
        let mut n = vec![0; 1 + self.shards.len()];
        for m in self.members.values() {
            if let Some(c) = n.get_mut(m.shard) {
                *c += 1;
            }
        }
        n
    }

    pub(super) fn mode(&self) -> Mode {
        self.mode
    }

    pub(super) fn members(&self) -> &BTreeMap<u32, Member> {
        &self.members
    }

    pub(super) fn member(&self, id: u32) -> Option<&Member> {
        self.members.get(&id)
    }

    pub(super) fn add(&mut self, id: u32, m: Member) {
        self.to_recording(|at| crate::recording::RecMsg::Joined {
            at,
            participant: id,
            name: m.name.clone(),
        });
        self.members.insert(id, m);
    }

    pub(super) fn remove(&mut self, id: u32) -> Option<Member> {
        if self.members.contains_key(&id) {
            self.to_recording(|at| crate::recording::RecMsg::Left {
                at,
                participant: id,
            });
        }
        self.quality.remove(&id);
        self.speaking.remove(&id);
        if self.dominant == Some(id) {
            self.dominant = None;
        }
        self.members.remove(&id)
    }

    /// The `userjoined` line (with its billing options) for member `id` of this room.
    pub(super) fn announce(&self, conference: &str, id: u32, m: &Member) -> MsMsg {
        MsMsg::Member(protocol::Member {
            conference: conference.to_owned(),
            participant: id,
            name: m.name.clone(),
            account: m.account.clone(),
            mode: self.mode,
            media: if m.video {
                vec![MediaKind::Audio, MediaKind::Video]
            } else {
                vec![MediaKind::Audio]
            },
            domain: m.domain.clone(),
            joined_unix_ms: m.joined_unix_ms,
        })
    }

    /// Capacity units this room's members use, and its recording while one runs.
    pub(super) fn units(&self, cost: &CostModel) -> u64 {
        let recording = if self.recording.is_some() {
            u64::from(cost.recording)
        } else {
            0
        };
        // Each link carries every member's media once more, as one more receiver would.
        let video = self.members.values().any(|m| m.video);
        let links = self.links.len() as u64 * u64::from(cost.per_participant(self.mode, video));
        self.members
            .values()
            .map(|m| u64::from(cost.per_participant(self.mode, m.video)))
            .sum::<u64>()
            + recording
            + links
    }

    /// A `reserve` from the dispatcher: the user is on the way, unless already here.
    pub(super) fn reserve(&mut self, user: String, expires: u64) {
        let key = (user, expires);
        match self.early_joins.iter().position(|j| *j == key) {
            Some(i) => {
                self.early_joins.swap_remove(i);
            }
            None => self.reservations.push(key),
        }
    }

    /// A join with a ticket: settles its reservation, or remembers it came first.
    pub(super) fn arrived(&mut self, user: &str, expires: u64) {
        match self
            .reservations
            .iter()
            .position(|(u, e)| u == user && *e == expires)
        {
            Some(i) => {
                self.reservations.swap_remove(i);
            }
            None => self.early_joins.push((user.to_owned(), expires)),
        }
    }

    /// Forgets reservations and early joins whose tickets have expired.
    pub(super) fn expire(&mut self, unix_now: u64) {
        self.reservations.retain(|(_, exp)| *exp >= unix_now);
        self.early_joins.retain(|(_, exp)| *exp >= unix_now);
    }

    /// Sends a line to every member but `except`, encoded once.
    pub(super) fn broadcast(&self, msg: &ServerMsg, except: Option<u32>) {
        let line = bytes::Bytes::from(msg.encode());
        for (id, m) in &self.members {
            if Some(*id) != except {
                m.outbox.send(line.clone());
            }
        }
    }

    /// Records a member's light; true when it changed.
    pub(super) fn set_quality(&mut self, participant: u32, q: Quality) -> bool {
        self.members.contains_key(&participant) && self.quality.insert(participant, q) != Some(q)
    }

    /// No members and nobody on the way: the conference can go.
    pub(super) fn is_idle(&self) -> bool {
        self.members.is_empty() && self.reservations.is_empty()
    }
}

/// All rooms of this server, with the ids and SSRCs they hand out.
#[derive(Default)]
pub(super) struct Rooms {
    rooms: HashMap<String, Room>,
    next_conf: mesh::ConfId,
    next_participant: u32,
    /// Every SSRC in use on this server, with the participant sending it.
    ssrcs: HashMap<u32, u32>,
}

impl Rooms {
    pub(super) fn get(&self, conference: &str) -> Option<&Room> {
        self.rooms.get(conference)
    }

    pub(super) fn get_mut(&mut self, conference: &str) -> Option<&mut Room> {
        self.rooms.get_mut(conference)
    }

    pub(super) fn insert(&mut self, conference: &str, room: Room) {
        self.rooms.insert(conference.to_owned(), room);
    }

    pub(super) fn remove(&mut self, conference: &str) -> Option<Room> {
        self.rooms.remove(conference)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&String, &Room)> {
        self.rooms.iter()
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut Room)> {
        self.rooms.iter_mut()
    }

    pub(super) fn len(&self) -> usize {
        self.rooms.len()
    }

    /// The room running `conf` on `worker`.
    pub(super) fn by_conf(&mut self, worker: usize, conf: mesh::ConfId) -> Option<&mut Room> {
        self.rooms
            .values_mut()
            .find(|r| r.shard_at(worker, conf).is_some())
    }

    /// The name of the conference `conf` on `worker`.
    pub(super) fn name_of(&self, worker: usize, conf: mesh::ConfId) -> Option<&str> {
        self.rooms
            .iter()
            .find(|(_, r)| r.shard_at(worker, conf).is_some())
            .map(|(n, _)| n.as_str())
    }

    pub(super) fn next_conf(&mut self) -> mesh::ConfId {
        self.next_conf += 1;
        self.next_conf
    }

    pub(super) fn next_participant(&mut self) -> u32 {
        self.next_participant += 1;
        self.next_participant
    }

    /// A fresh SSRC, unique on this server, so the sorter never confuses two senders.
    pub(super) fn new_ssrc(&mut self, participant: u32) -> u32 {
        loop {
            let s: u32 = rand::random();
            if s != 0 && !self.ssrcs.contains_key(&s) {
                self.ssrcs.insert(s, participant);
                return s;
            }
        }
    }

    /// Takes an SSRC a client chose (an external sender's); false if it is 0 or taken.
    pub(super) fn claim_ssrc(&mut self, ssrc: u32, participant: u32) -> bool {
        if ssrc == 0 || self.ssrcs.contains_key(&ssrc) {
            return false;
        }
        self.ssrcs.insert(ssrc, participant);
        true
    }

    /// Every SSRC `participant` sends with (audio, video, simulcast layers).
    pub(super) fn ssrcs_of(&self, participant: u32) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .ssrcs
            .iter()
            .filter(|(_, &p)| p == participant)
            .map(|(&s, _)| s)
            .collect();
        v.sort_unstable();
        v
    }

    /// The participant sending `ssrc` on this server.
    pub(super) fn ssrc_owner(&self, ssrc: u32) -> Option<u32> {
        self.ssrcs.get(&ssrc).copied()
    }

    pub(super) fn free_ssrc(&mut self, ssrc: u32) {
        self.ssrcs.remove(&ssrc);
    }

    /// Capacity units the members of every room use, by the shared cost model.
    pub(super) fn units(&self, cost: &CostModel) -> u64 {
        self.rooms.values().map(|r| r.units(cost)).sum()
    }

    pub(super) fn users(&self) -> usize {
        self.rooms.values().map(|r| r.members.len()).sum()
    }

    /// Conferences per worker, to place a new one on the least loaded.
    pub(super) fn load(&self, workers: usize) -> Vec<usize> {
        let mut load = vec![0; workers];
        for (w, _) in self.rooms.values().flat_map(Room::places) {
            if let Some(l) = load.get_mut(w) {
                *l += 1;
            }
        }
        load
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> Room {
        Room::new(1, 0, Mode::Reflect)
    }

    #[test]
    fn reserve_then_join_settles() {
        let mut r = room();
        r.reserve("ann".into(), 100);
        assert!(!r.is_idle());
        r.arrived("ann", 100);
        assert!(r.is_idle());
    }

    #[test]
    fn join_before_its_reserve_does_not_leave_a_reservation() {
        let mut r = room();
        r.arrived("ann", 100);
        r.reserve("ann".into(), 100);
        assert!(r.is_idle());
        assert!(r.early_joins.is_empty());
    }

    #[test]
    fn chat_bucket_passes_a_burst_then_the_rate_and_answers_a_flood_once() {
        let t0 = Instant::now();
        let mut b = ChatBucket::new(3, t0);
        for _ in 0..3 {
            assert_eq!(b.take(t0, 2.0, 3), Ok(()));
        }
        assert_eq!(
            b.take(t0, 2.0, 3),
            Err(true),
            "the first refusal is answered"
        );
        assert_eq!(
            b.take(t0, 2.0, 3),
            Err(false),
            "the rest are dropped quietly"
        );
        let later = t0 + std::time::Duration::from_millis(500);
        assert_eq!(
            b.take(later, 2.0, 3),
            Ok(()),
            "one line a half second at 2/s"
        );
        assert_eq!(
            b.take(later, 2.0, 3),
            Err(true),
            "a new flood is answered again"
        );
        // A long pause refills no more than the burst.
        let much_later = t0 + std::time::Duration::from_secs(60);
        let passed = (0..10)
            .filter(|_| b.take(much_later, 2.0, 3).is_ok())
            .count();
        assert_eq!(passed, 3);
    }

    #[test]
    fn unmatched_reservations_expire() {
        let mut r = room();
        r.reserve("ann".into(), 100);
        r.arrived("bob", 100);
        r.expire(100);
        assert!(!r.is_idle());
        r.expire(101);
        assert!(r.is_idle());
        assert!(r.early_joins.is_empty());
    }
}
