//! Network input never panics: random RTCP-shaped compounds (valid headers, random bodies and
//! types) from a receiver and from a sender, against a reflector with every feature on.

mod common;

use std::time::Duration;

use common::*;
use mesh::Command;
use testkit::rng::Rng;

#[test]
fn random_rtcp_is_survived() {
    let mut sim = Sim::with(&[1, 2, 3], |r| {
        r.set_last_n(Some(2), reflector::DEFAULT_AUDIO_LEVEL_ID)
    });
    sim.mesh.handle_command(
        sim.now,
        Command::SetSimulcast {
            conf: CONF,
            participant: 1,
            layers: vec![0x7001, video_ssrc(1)],
        },
    );
    sim.mesh.handle_command(
        sim.now,
        Command::ReceiverPrefs {
            conf: CONF,
            participant: 2,
            prefs: mesh::ReceiverPrefs {
                max_layer: Some(1),
                rtx_payload_type: Some(97),
            },
        },
    );
    sim.run(Duration::from_millis(10));
    sim.simulcast_camera(1, 30, &[(0x7001, 1, 300), (video_ssrc(1), 3, 1000)]);
    sim.camera(3, 30);
    sim.run(Duration::from_millis(500));
    let mut rng = Rng::new(0x1234_5678_9abc_def1);
    let ssrcs = [0x7001, video_ssrc(1), video_ssrc(3), 0, 1];
    for i in 0..20_000u32 {
        let words = rng.below(12) as usize + 1;
        let mut p = vec![0u8; 4 * (words + 1)];
        rng.fill(&mut p);
        p[0] = 0x80 | (p[0] & 0x3f);
        p[1] = *rng.pick(&[200, 201, 202, 203, 205, 206]);
        p[2..4].copy_from_slice(&(words as u16).to_be_bytes());
        // Often name a real stream, so the handlers go past their lookups.
        if p.len() >= 12 && rng.below(2) == 0 {
            let s = *rng.pick(&ssrcs);
            p[8..12].copy_from_slice(&s.to_be_bytes());
        }
        if p.len() >= 16 && rng.below(4) == 0 {
            p[12..16].copy_from_slice(b"REMB");
        }
        let from = [1, 2, 3][(i % 3) as usize];
        sim.rtcp_from(from, &p);
        if i % 500 == 0 {
            sim.run(Duration::from_millis(20));
        }
    }
    // A fair share got past validation into the handlers.
    let st = sim.mesh.stats();
    assert!(st.rtcp_in > 2_000, "{st:?}");
    // Still forwarding.
    let before = sim.media(2).len();
    sim.run(Duration::from_millis(500));
    assert!(sim.media(2).len() > before);
}
