//! Spreading one conference over this server's workers. A room whose part on a worker
//! holds `worker_share` members gets a part on another worker; the parts are linked
//! pairwise the way linked servers are (`super::links`), inside one process: each part's
//! end (`Endpoint::ShardPeer`) sends its own members' media once to the other worker's
//! port, and each part mirrors the other parts' members (`Endpoint::ShardRemote`, under
//! their own ids). So one room's fan-out uses several cores, and a sender's packet reaches
//! another worker through that worker's own socket queue: no lock on the packet path.
//! Members are seated on the part with the fewest. A room linked with other servers keeps
//! its links on its first part, which passes what they bring on to the other parts (and
//! their members' media to the links); the other parts mirror the linked servers' members
//! from it.

use super::links::relay_channel as relay;
use super::rooms::Rooms;
use super::Conferences;
use crate::path::MediaPath;
use mesh::{Command, Endpoint, MediaKind};
use protocol::Mode;
use reflector::VideoCodec;

/// The end in part `from`'s mesh that sends to part `to`, and its SSRCs (`to` stamps its
/// RTCP about `from`'s members with the first).
pub(crate) struct ShardEnd {
    from: usize,
    to: usize,
    ssrcs: [u32; 2],
}

impl Conferences {
    /// The part of `conference` a newcomer joins: the one with the fewest members; when
    /// that one already holds a worker's share and some worker has no part of the room, a
    /// new part there. A composited room stays on one worker.
    pub(super) fn seat_member(&self, rooms: &mut Rooms, conference: &str) -> usize {
        let Some(room) = rooms.get(conference) else {
            return 0;
        };
        let sizes = room.shard_sizes();
        let (best, fewest) = sizes
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|&(_, n)| n)
            .unwrap_or((0, 0));
        let spreads = matches!(room.mode(), Mode::Reflect | Mode::Mix);
        if fewest < self.settings.worker_share || !spreads {
            return best;
        }
        let used: Vec<usize> = room.places().iter().map(|&(w, _)| w).collect();
        let load = rooms.load(self.workers.len());
        let free = (0..self.workers.len())
            .filter(|w| !used.contains(w))
            .min_by_key(|&w| load[w]);
        match free {
            Some(worker) => self.add_shard(rooms, conference, worker).unwrap_or(best),
            None => best,
        }
    }

    /// A new part of `conference` on `worker`, linked with every other part, with every
    /// member mirrored there; its index, `None` when its worker's queue is full.
    fn add_shard(&self, rooms: &mut Rooms, conference: &str, worker: usize) -> Option<usize> {
        let mode = rooms.get(conference)?.mode();
        let conf = rooms.next_conf();
        let codecs = [
            (super::join::H264_PT, VideoCodec::H264),
            (super::join::VP8_PT, VideoCodec::Vp8),
        ];
        // The room's recording and video transcoding stay with its first part.
        let (path, _switch) = MediaPath::new(mode, self.settings.last_n, &codecs, None, None);
        let create = Command::CreateConference {
            conf,
            path: Box::new(path),
        };
        if self.command(worker, create).is_err() {
            tracing::warn!(conference, worker, "room not spread: worker queue full");
            return None;
        }
        let room = rooms.get_mut(conference)?;
        room.shards.push((worker, conf));
        let new = room.shards.len();
        for other in 0..new {
            self.shard_end(rooms, conference, other, new);
            self.shard_end(rooms, conference, new, other);
        }
        let room = rooms.get(conference)?;
        for (&id, m) in room.members() {
            let ssrcs = (m.ssrc, m.video_ssrc, &m.simulcast[..]);
            self.mirror_on(rooms, conference, id, m.shard, new, ssrcs);
        }
        // Linked servers' members come through the first part.
        for link in room.links.values() {
            for m in link.mirrors() {
                self.mirror_on(rooms, conference, m.local, 0, new, m.streams());
            }
        }
        tracing::info!(
            conference,
            worker,
            part = new,
            "conference spread to another worker"
        );
        Some(new)
    }

    /// The end in part `from` that sends that part's members' media to part `to`.
    fn shard_end(&self, rooms: &mut Rooms, conference: &str, from: usize, to: usize) {
        let end = rooms.next_participant();
        let ssrcs = [rooms.new_ssrc(end), rooms.new_ssrc(end)];
        let Some(room) = rooms.get_mut(conference) else {
            return;
        };
        let (worker, conf) = room.place(from);
        let to_addr = self.workers[room.place(to).0].addr;
        let cmds = [
            Command::AddParticipant {
                conf,
                participant: end,
            },
            relay(conf, end, to_addr, MediaKind::Audio, ssrcs[0]),
            relay(conf, end, to_addr, MediaKind::Video, ssrcs[1]),
            Command::SetEndpoint {
                conf,
                participant: end,
                endpoint: Endpoint::ShardPeer,
            },
        ];
        self.send_all(worker, cmds);
        room.shard_ends.push(ShardEnd { from, to, ssrcs });
    }

    /// Mirrors member `id` (of part `home`; a linked server's member: part 0, where its
    /// link is) with its `(audio, video, simulcast)` SSRCs on every other part of the room.
    pub(super) fn mirror_member(
        &self,
        rooms: &Rooms,
        conference: &str,
        id: u32,
        home: usize,
        ssrcs: (u32, Option<u32>, &[u32]),
    ) {
        let Some(room) = rooms.get(conference) else {
            return;
        };
        for part in (0..room.places().len()).filter(|&p| p != home) {
            self.mirror_on(rooms, conference, id, home, part, ssrcs);
        }
    }

    fn mirror_on(
        &self,
        rooms: &Rooms,
        conference: &str,
        id: u32,
        home: usize,
        part: usize,
        (ssrc, video_ssrc, simulcast): (u32, Option<u32>, &[u32]),
    ) {
        let Some(room) = rooms.get(conference) else {
            return;
        };
        let Some(link_ssrc) = room
            .shard_ends
            .iter()
            .find(|e| e.from == home && e.to == part)
            .map(|e| e.ssrcs[0])
        else {
            return;
        };
        let from = self.workers[room.place(home).0].addr;
        let (worker, conf) = room.place(part);
        let mut cmds = vec![
            Command::AddParticipant {
                conf,
                participant: id,
            },
            relay(conf, id, from, MediaKind::Audio, ssrc),
        ];
        cmds.extend(video_ssrc.map(|v| relay(conf, id, from, MediaKind::Video, v)));
        cmds.push(Command::SetEndpoint {
            conf,
            participant: id,
            endpoint: Endpoint::ShardRemote { link_ssrc },
        });
        // Mirrored after it declared simulcast (a part added later, a link's member).
        if let (Some(top), false) = (video_ssrc, simulcast.is_empty()) {
            let mut layers = simulcast.to_vec();
            layers.push(top);
            cmds.push(Command::SetSimulcast {
                conf,
                participant: id,
                layers,
            });
        }
        self.send_all(worker, cmds);
    }

    /// Member `id`'s simulcast encodings (`layers` under `top`; none: plain video again) on
    /// its mirrors in the room's other parts.
    pub(super) fn resimulcast(
        &self,
        rooms: &Rooms,
        conference: &str,
        id: u32,
        layers: &[u32],
        top: u32,
    ) {
        let Some(room) = rooms.get(conference) else {
            return;
        };
        let home = room.home(id);
        // Just `top`: one encoding, as the client's own `channel` line does it.
        let mut all = layers.to_vec();
        all.push(top);
        for part in (0..room.places().len()).filter(|&p| p != home) {
            let (worker, conf) = room.place(part);
            let cmd = Command::SetSimulcast {
                conf,
                participant: id,
                layers: all.clone(),
            };
            self.send_all(worker, [cmd]);
        }
    }

    /// A member's new SSRC (an external sender's own), on its mirrors too.
    pub(super) fn remirror(
        &self,
        rooms: &Rooms,
        conference: &str,
        id: u32,
        kind: MediaKind,
        ssrc: u32,
    ) {
        let Some(room) = rooms.get(conference) else {
            return;
        };
        let home = room.home(id);
        let from = self.workers[room.place(home).0].addr;
        for part in (0..room.places().len()).filter(|&p| p != home) {
            let (worker, conf) = room.place(part);
            self.send_all(worker, [relay(conf, id, from, kind, ssrc)]);
        }
    }

    /// Sends set-up commands in order; a full queue drops the rest, with a warning (the
    /// member then misses the media of that part until it joins again).
    fn send_all(&self, worker: usize, cmds: impl IntoIterator<Item = Command<MediaPath>>) {
        for cmd in cmds {
            if self.command(worker, cmd).is_err() {
                tracing::warn!(worker, "worker queue full: room part not fully set up");
                return;
            }
        }
    }
}
