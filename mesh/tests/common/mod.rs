//! A mesh on testkit's virtual-time network: what a participant sends crosses its uplink to
//! the mesh, what the mesh sends crosses the receiver's downlink into its inbox. Links are
//! ideal unless a test impairs them. No sockets, no wall clock.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mesh::{
    Command, ConfId, MediaKind, Mesh, MeshConfig, ParticipantId, Path, Remote, RtpView, TxBatch,
};
use testkit::conference::{self, Channel};
use testkit::net::Fate;
pub use testkit::packet::rtp;

/// Routes every packet to every member, the sender included, so the mesh's own filter is
/// what keeps a participant from hearing itself.
#[derive(Default)]
pub struct Everyone;

impl Path for Everyone {
    fn route(
        &mut self,
        _now: Instant,
        _src: ParticipantId,
        _kind: MediaKind,
        _pkt: &RtpView<'_>,
        members: &[ParticipantId],
        out: &mut Vec<ParticipantId>,
    ) {
        out.extend_from_slice(members);
    }
}

pub const CONF: ConfId = 7;

/// The address participant `id` sends from and receives at.
pub fn addr(id: ParticipantId) -> SocketAddr {
    SocketAddr::new(ip(id), 5000)
}

pub fn ip(id: ParticipantId) -> IpAddr {
    IpAddr::from([10, 0, 0, id as u8])
}

pub fn ssrc(id: ParticipantId, kind: MediaKind) -> u32 {
    match kind {
        MediaKind::Audio => 1000 + id,
        MediaKind::Video => 2000 + id,
    }
}

pub fn clock_rate(kind: MediaKind) -> u32 {
    match kind {
        MediaKind::Audio => 48_000,
        MediaKind::Video => 90_000,
    }
}

/// Participant `id`'s audio and video channels.
pub fn channels(id: ParticipantId) -> [Channel; 2] {
    [
        Channel::audio(ssrc(id, MediaKind::Audio)),
        Channel::video(ssrc(id, MediaKind::Video)),
    ]
}

pub fn ssrc_of(pkt: &[u8]) -> u32 {
    RtpView::parse(pkt).expect("mesh only sends RTP").ssrc()
}

pub struct Net<P: Path> {
    pub mesh: Mesh<P>,
    pub now: Instant,
    /// Links into the mesh, by sender address.
    pub up: testkit::net::Net<SocketAddr>,
    /// Links out of the mesh, by receiver address.
    pub down: testkit::net::Net<SocketAddr>,
    batch: TxBatch,
    /// Everything that reached each address from the mesh, in arrival order.
    pub inbox: HashMap<SocketAddr, Vec<Vec<u8>>>,
    /// Next sequence number per SSRC.
    seqs: HashMap<u32, u16>,
}

impl<P: Path> Net<P> {
    pub fn new(cfg: MeshConfig) -> Self {
        let now = Instant::now();
        Self {
            mesh: Mesh::new(now, cfg),
            now,
            up: testkit::net::Net::new(0x5eed_0001),
            down: testkit::net::Net::new(0x5eed_0002),
            batch: TxBatch::with_capacity(256, 256 * 1500),
            inbox: HashMap::new(),
            seqs: HashMap::new(),
        }
    }

    pub fn command(&mut self, cmd: Command<P>) {
        self.mesh.handle_command(self.now, cmd);
    }

    /// Advances virtual time by `dt` and ticks the mesh.
    pub fn tick(&mut self, dt: Duration) {
        self.now += dt;
        self.mesh.handle_tick(self.now);
    }

    /// Queues a conference with `ids`, each with audio and video channels at [`addr`], and
    /// applies it with a tick.
    pub fn conference(&mut self, path: P, ids: &[ParticipantId]) {
        self.command(Command::CreateConference {
            conf: CONF,
            path: Box::new(path),
        });
        for &id in ids {
            self.join(id, Remote::Addr(addr(id)));
        }
        self.tick(Duration::from_millis(10));
    }

    /// Queues an AddParticipant and both channels for `id` at `remote`.
    pub fn join(&mut self, id: ParticipantId, remote: Remote) {
        conference::join(&mut self.mesh, self.now, CONF, id, remote, &channels(id));
    }

    /// Hands one datagram to the mesh now, past any uplink, and collects what it sends;
    /// returns how many packets that was.
    pub fn send_raw(&mut self, from: SocketAddr, data: &[u8]) -> usize {
        self.mesh.handle_datagram(self.now, from, data);
        self.drain()
    }

    /// Sends the next packet of participant `id`'s `kind` stream from `from`.
    pub fn send_from(&mut self, from: SocketAddr, id: ParticipantId, kind: MediaKind) -> usize {
        let s = ssrc(id, kind);
        let seq = self.seqs.entry(s).or_insert(0);
        let pkt = rtp(s, *seq, u32::from(*seq) * 960, 200);
        *seq = seq.wrapping_add(1);
        self.send_raw(from, &pkt)
    }

    pub fn send(&mut self, id: ParticipantId, kind: MediaKind) -> usize {
        self.send_from(addr(id), id, kind)
    }

    /// Puts a datagram on `from`'s uplink now; it reaches the mesh in [`Net::run_until`].
    pub fn transmit(&mut self, from: SocketAddr, data: Vec<u8>) -> Fate {
        self.up.send(self.now, from, data)
    }

    /// Hands the mesh the next datagram its uplinks deliver by `until`, at its arrival time;
    /// returns its sender and how many packets the mesh sent for it.
    pub fn deliver_next(&mut self, until: Instant) -> Option<(SocketAddr, usize)> {
        let d = self.up.poll(until)?;
        self.now = self.now.max(d.at);
        Some((d.link, self.send_raw(d.link, &d.packet)))
    }

    /// Delivers everything the uplinks carry by `until`, then moves the clock there.
    pub fn run_until(&mut self, until: Instant) {
        while self.deliver_next(until).is_some() {}
        self.now = self.now.max(until);
        self.arrive();
    }

    /// Puts the mesh's transmit batch on the downlinks and delivers what has arrived; returns
    /// how many packets the batch held.
    pub fn drain(&mut self) -> usize {
        self.mesh.poll_transmit(&mut self.batch);
        let n = self.batch.len();
        for (dest, bytes) in self.batch.iter() {
            self.down.send(self.now, dest, bytes.to_vec());
        }
        self.batch.clear();
        self.arrive();
        n
    }

    /// Moves what the downlinks delivered by now into the inboxes.
    fn arrive(&mut self) {
        for d in self.down.drain(self.now) {
            self.inbox.entry(d.link).or_default().push(d.packet);
        }
    }

    /// SSRCs received at `to`, in arrival order.
    pub fn received(&self, to: SocketAddr) -> Vec<u32> {
        self.inbox
            .get(&to)
            .map(|v| v.iter().map(|p| ssrc_of(p)).collect())
            .unwrap_or_default()
    }

    pub fn count_from(&self, to: SocketAddr, ssrc: u32) -> usize {
        self.received(to).iter().filter(|&&s| s == ssrc).count()
    }
}
