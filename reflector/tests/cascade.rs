//! Cascading in virtual time: two reflector meshes ("servers" A and B) share a conference
//! over one link. Each sends its own clients' media once to the other, fans out what it
//! receives to its own clients, never sends back what came over the link, and feedback
//! (a PLI) finds its way back to the origin sender.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{audio_packet, audio_ssrc, video_ssrc, VP8_PT};
use mesh::rtcp::{self, Rtcp};
use mesh::{Command, Endpoint, Hasher, Mesh, MeshConfig, ParticipantId, Remote, TxBatch};
use reflector::{Reflector, VideoCodec};
use testkit::conference::{self, Channel};
use testkit::packet::{self, vp8, Rtp};

const CONF: u32 = 4;
/// The media address of each server's worker.
const A: ([u8; 4], u16) = ([10, 1, 0, 1], 40000);
const B: ([u8; 4], u16) = ([10, 1, 0, 2], 40000);
/// Each side's link end ("peer") and the SSRCs it is known by on the other side.
const PEER_ID: ParticipantId = 100;
const A_LINK_SSRC: u32 = 0xa11a; // B's peer participant on A sends RTCP with this
const B_LINK_SSRC: u32 = 0xb11b; // A's peer participant on B sends RTCP with this

fn sa(a: ([u8; 4], u16)) -> SocketAddr {
    SocketAddr::from(a)
}

fn client(id: ParticipantId) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, id as u8], 5000))
}

struct Server {
    mesh: Mesh<Reflector>,
    batch: TxBatch,
}

impl Server {
    /// With last-N: only the video of the `n` latest talkers is forwarded.
    fn with_last_n(now: Instant, n: Option<usize>) -> Server {
        let mut r = Reflector::with_hasher(Hasher::seeded(7));
        r.set_video_codec(VP8_PT, VideoCodec::Vp8);
        r.set_last_n(n, reflector::DEFAULT_AUDIO_LEVEL_ID);
        let mut mesh = Mesh::new(
            now,
            MeshConfig {
                hash_seed: Some(7),
                ..MeshConfig::default()
            },
        );
        conference::create(&mut mesh, now, CONF, r);
        Server {
            mesh,
            batch: TxBatch::with_capacity(1024, 1024 * 1500),
        }
    }

    fn client(&mut self, now: Instant, id: ParticipantId) {
        let ch = [
            Channel::audio(audio_ssrc(id)),
            Channel::video(video_ssrc(id)),
        ];
        conference::join(&mut self.mesh, now, CONF, id, Remote::Addr(client(id)), &ch);
    }

    /// The link's end here: what it receives goes to `other`; `ssrcs` are what it is known
    /// by (its RTCP comes with the first).
    fn peer(&mut self, now: Instant, other: SocketAddr, ssrcs: [u32; 2]) {
        let ch = [Channel::audio(ssrcs[0]), Channel::video(ssrcs[1])];
        conference::join(
            &mut self.mesh,
            now,
            CONF,
            PEER_ID,
            Remote::Relay(other),
            &ch,
        );
        self.endpoint(now, PEER_ID, Endpoint::Peer);
    }

    /// A member of the other server, mirrored here.
    fn mirror(&mut self, now: Instant, id: ParticipantId, other: SocketAddr, link_ssrc: u32) {
        let ch = [
            Channel::audio(audio_ssrc(id)),
            Channel::video(video_ssrc(id)),
        ];
        conference::join(&mut self.mesh, now, CONF, id, Remote::Relay(other), &ch);
        self.endpoint(now, id, Endpoint::Remote { link_ssrc });
    }

    fn endpoint(&mut self, now: Instant, participant: ParticipantId, endpoint: Endpoint) {
        self.mesh.handle_command(
            now,
            Command::SetEndpoint {
                conf: CONF,
                participant,
                endpoint,
            },
        );
    }

    /// Everything sent since the last call: (destination, bytes).
    fn sent(&mut self, now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
        self.mesh.handle_tick(now);
        self.mesh.poll_transmit(&mut self.batch);
        let out = self
            .batch
            .iter()
            .map(|(dest, p)| (dest, p.to_vec()))
            .collect::<Vec<_>>();
        self.batch.clear();
        out
    }
}

fn ssrc_of(pkt: &[u8]) -> u32 {
    u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]])
}

/// A: client 1 and the link; B: clients 2 and 3, the link, and 1 mirrored; A mirrors 2 and 3.
fn linked(now: Instant) -> (Server, Server) {
    linked_with(now, None)
}

fn linked_with(now: Instant, last_n: Option<usize>) -> (Server, Server) {
    let (mut a, mut b) = (
        Server::with_last_n(now, last_n),
        Server::with_last_n(now, last_n),
    );
    a.client(now, 1);
    a.peer(now, sa(B), [A_LINK_SSRC, A_LINK_SSRC + 1]);
    b.client(now, 2);
    b.client(now, 3);
    b.peer(now, sa(A), [B_LINK_SSRC, B_LINK_SSRC + 1]);
    b.mirror(now, 1, sa(A), A_LINK_SSRC);
    a.mirror(now, 2, sa(B), B_LINK_SSRC);
    a.mirror(now, 3, sa(B), B_LINK_SSRC);
    a.sent(now);
    b.sent(now);
    (a, b)
}

#[test]
fn each_server_sends_its_own_media_once_and_fans_out_the_others() {
    let now = Instant::now();
    let (mut a, mut b) = linked(now);

    // Client 1 (on A) talks: A sends it to the link once, never to its mirrors.
    a.mesh
        .handle_datagram(now, client(1), &audio_packet(audio_ssrc(1), 1, 10));
    let out = a.sent(now);
    assert_eq!(out.len(), 1, "one copy, over the link: {out:?}");
    assert_eq!(out[0].0, sa(B));
    // B takes it from A's address by its SSRC and gives it to its clients, not back to A.
    b.mesh.handle_datagram(now, sa(A), &out[0].1);
    let mut dests: Vec<_> = b.sent(now).into_iter().map(|(d, _)| d).collect();
    dests.sort();
    assert_eq!(dests, vec![client(2), client(3)]);

    // Client 2 (on B) talks: B sends it to 3 and to the link; A gives it to 1 only.
    b.mesh
        .handle_datagram(now, client(2), &audio_packet(audio_ssrc(2), 1, 10));
    let out = b.sent(now);
    let mut dests: Vec<_> = out.iter().map(|(d, _)| *d).collect();
    dests.sort();
    assert_eq!(dests, vec![client(3), sa(A)]);
    let over = out
        .iter()
        .find(|(d, _)| *d == sa(A))
        .expect("the link's copy");
    a.mesh.handle_datagram(now, sa(B), &over.1);
    let out = a.sent(now);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, client(1));
    assert_eq!(ssrc_of(&out[0].1), audio_ssrc(2));

    // A stranger's SSRC from the linked address is nobody's.
    a.mesh
        .handle_datagram(now, sa(B), &audio_packet(0xdead, 1, 10));
    assert!(a.sent(now).is_empty());
    assert_eq!(
        a.mesh.stats().drops(mesh::DropReason::UnknownSource),
        1,
        "{:?}",
        a.mesh.stats()
    );
}

#[test]
fn a_keyframe_request_from_the_far_side_reaches_the_origin_sender() {
    let mut now = Instant::now();
    let (mut a, mut b) = linked(now);
    let mut seq = 0u16;
    let mut frame = |key: bool| {
        seq = seq.wrapping_add(1);
        Rtp::new(video_ssrc(1))
            .pt(VP8_PT)
            .seq(seq)
            .ts(u32::from(seq) * 3000)
            .marker(true)
            .payload(&vp8(true, key, None))
            .size(600)
            .build()
    };
    // Client 1's camera: a keyframe, then deltas; B's clients get it through the link.
    for i in 0..5 {
        a.mesh.handle_datagram(now, client(1), &frame(i == 0));
        for (dest, pkt) in a.sent(now) {
            if dest == sa(B) {
                b.mesh.handle_datagram(now, sa(A), &pkt);
            }
        }
        let got = b.sent(now);
        assert!(
            got.iter().any(|(d, _)| *d == client(2)) && got.iter().any(|(d, _)| *d == client(3)),
            "frame {i} reaches B's clients: {got:?}"
        );
        now += Duration::from_millis(33);
    }
    // Client 2 asks for a keyframe of 1's video: B relays it over the link, under the SSRC
    // A knows B's end by, and A asks client 1.
    b.mesh
        .handle_datagram(now, client(2), &packet::pli(video_ssrc(2), video_ssrc(1)));
    let over: Vec<_> = b
        .sent(now)
        .into_iter()
        .filter(|(d, _)| *d == sa(A))
        .collect();
    assert_eq!(over.len(), 1, "{over:?}");
    assert_eq!(rtcp::sender_ssrc(&over[0].1), Some(A_LINK_SSRC));
    now += Duration::from_millis(1);
    a.mesh.handle_datagram(now, sa(B), &over[0].1);
    let to_sender: Vec<_> = a
        .sent(now)
        .into_iter()
        .filter(|(d, _)| *d == client(1))
        .collect();
    let plis = to_sender
        .iter()
        .flat_map(|(_, b)| rtcp::packets(b).flatten().collect::<Vec<_>>())
        .filter(|p| matches!(p, Rtcp::Pli { media, .. } if *media == video_ssrc(1)))
        .count();
    assert_eq!(plis, 1, "client 1 is asked for a keyframe: {to_sender:?}");
}

/// Simulcast across the link: A relays every encoding of its sender as it comes, and B
/// picks one per member of its own (by each one's estimate), asking A for keyframes of the
/// encoding it switches to.
#[test]
fn a_simulcast_sender_reaches_each_far_receiver_on_the_layer_that_fits_it() {
    let mut now = Instant::now();
    let (mut a, mut b) = linked(now);
    // Lowest first; the top encoding is the channel's own SSRC. Each layer's packets have
    // a size of their own, so the layer a receiver gets shows through the rewrite.
    let layers = [0x1001, 0x1101, video_ssrc(1)];
    let sizes = [200usize, 500, 1200];
    for s in [&mut a, &mut b] {
        s.mesh.handle_command(
            now,
            Command::SetSimulcast {
                conf: CONF,
                participant: 1,
                layers: layers.to_vec(),
            },
        );
    }
    let mut seq = [0u16; 3];
    let mut over_link = std::collections::HashSet::new();
    let mut to_sender = Vec::new();
    let mut got: std::collections::HashMap<SocketAddr, Vec<usize>> = Default::default();
    for frame in 0..120u32 {
        // Client 3 can take about 100 kbit/s: the lowest layer only.
        if frame % 10 == 0 {
            let remb = packet::remb(video_ssrc(3), 100_000, &[video_ssrc(1)]);
            b.mesh.handle_datagram(now, client(3), &remb);
        }
        for (l, &ssrc) in layers.iter().enumerate() {
            seq[l] = seq[l].wrapping_add(1);
            let pkt = Rtp::new(ssrc)
                .pt(VP8_PT)
                .seq(seq[l])
                .ts(frame * 3000)
                .marker(true)
                .payload(&vp8(true, frame % 30 == 0, None))
                .size(sizes[l])
                .build();
            a.mesh.handle_datagram(now, client(1), &pkt);
        }
        for (dest, pkt) in a.sent(now) {
            if dest == sa(B) {
                if !mesh::rtp::is_rtcp(&pkt) {
                    over_link.insert((ssrc_of(&pkt), pkt.len()));
                }
                b.mesh.handle_datagram(now, sa(A), &pkt);
            } else if dest == client(1) {
                to_sender.push(pkt);
            }
        }
        for (dest, pkt) in b.sent(now) {
            if dest == sa(A) {
                a.mesh.handle_datagram(now, sa(B), &pkt);
            } else if !mesh::rtp::is_rtcp(&pkt) && frame >= 90 {
                assert_eq!(ssrc_of(&pkt), video_ssrc(1), "one SSRC per receiver");
                got.entry(dest).or_default().push(pkt.len());
            }
        }
        now += Duration::from_millis(33);
    }
    // Every encoding went over the link once per packet, unchanged.
    let mut encodings: Vec<(u32, usize)> = over_link.into_iter().collect();
    encodings.sort();
    assert_eq!(
        encodings,
        vec![(layers[0], 200), (layers[1], 500), (layers[2], 1200)]
    );
    // B's unconstrained member gets the top layer, the constrained one the lowest.
    let sizes_at = |c: ParticipantId| {
        let mut v = got.get(&client(c)).cloned().unwrap_or_default();
        v.dedup();
        v
    };
    assert_eq!(sizes_at(2), vec![1200], "{got:?}");
    assert_eq!(sizes_at(3), vec![200], "{got:?}");
    // B's switch of client 3 down asked A, over the link, for a keyframe of that layer.
    let asked_low = to_sender
        .iter()
        .flat_map(|b| rtcp::packets(b).flatten().collect::<Vec<_>>())
        .any(|p| matches!(p, Rtcp::Pli { media, .. } if media == layers[0]));
    assert!(asked_low, "no PLI for the lowest layer reached client 1");
}

/// Last-N holds across the link: with N = 1 on both servers, each forwards the camera of
/// whoever talks, wherever that talker is; a silent member's camera stays home, and when
/// the other one talks the cameras change places on both servers.
#[test]
fn last_n_follows_the_talker_across_the_link() {
    let mut now = Instant::now();
    let (mut a, mut b) = linked_with(now, Some(1));
    let mut seq = 0u16;
    let mut frame = 0u32;
    // (destination, video SSRC) of every video packet delivered to a client, by phase.
    let mut run = |a: &mut Server, b: &mut Server, talker: ParticipantId, ms: u64| {
        let mut got = Vec::new();
        for step in 0..ms / 20 {
            seq = seq.wrapping_add(1);
            for (id, server) in [(1, &mut *a), (2, &mut *b)] {
                let level = if id == talker { 10 } else { 127 };
                let pkt = audio_packet(audio_ssrc(id), seq, level);
                server.mesh.handle_datagram(now, client(id), &pkt);
            }
            if step % 2 == 0 {
                frame += 1;
                for (id, server) in [(1, &mut *a), (2, &mut *b)] {
                    let pkt = Rtp::new(video_ssrc(id))
                        .pt(VP8_PT)
                        .seq(frame as u16)
                        .ts(frame * 3000)
                        .marker(true)
                        .payload(&vp8(true, frame % 10 == 1, None))
                        .size(300)
                        .build();
                    server.mesh.handle_datagram(now, client(id), &pkt);
                }
            }
            for (dest, pkt) in a.sent(now) {
                if dest == sa(B) {
                    b.mesh.handle_datagram(now, sa(A), &pkt);
                } else if !mesh::rtp::is_rtcp(&pkt) && pkt.len() > 200 {
                    got.push((dest, ssrc_of(&pkt)));
                }
            }
            for (dest, pkt) in b.sent(now) {
                if dest == sa(A) {
                    a.mesh.handle_datagram(now, sa(B), &pkt);
                } else if !mesh::rtp::is_rtcp(&pkt) && pkt.len() > 200 {
                    got.push((dest, ssrc_of(&pkt)));
                }
            }
            now += Duration::from_millis(20);
        }
        got
    };
    let cameras = |got: &[(SocketAddr, u32)], at: ParticipantId, from: usize| {
        let mut v: Vec<u32> = got[from..]
            .iter()
            .filter(|(d, _)| *d == client(at))
            .map(|&(_, s)| s)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    // 1 (on A) talks: B's clients see 1's camera, not 2's; 1 sees no camera (2 is silent).
    let got = run(&mut a, &mut b, 1, 3000);
    let late = got.len() / 2;
    assert_eq!(
        cameras(&got, 3, late),
        vec![video_ssrc(1)],
        "{:?}",
        &got[late..]
    );
    assert_eq!(cameras(&got, 2, late), vec![video_ssrc(1)]);
    assert!(cameras(&got, 1, late).is_empty());
    // 2 (on B) talks: A's client 1 and B's client 3 now see 2's camera, and 1's stops.
    let got = run(&mut a, &mut b, 2, 3000);
    let late = got.len() / 2;
    assert_eq!(cameras(&got, 1, late), vec![video_ssrc(2)]);
    assert_eq!(cameras(&got, 3, late), vec![video_ssrc(2)]);
}
