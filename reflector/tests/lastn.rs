//! Last-N in virtual time: with N = 2 and four talkers in sequence, the video a receiver
//! gets follows the two most recent speakers, each newcomer from a keyframe.

mod common;

use std::time::Duration;

use common::*;
use mesh::Event;

#[test]
fn forwarded_video_follows_the_two_most_recent_speakers() {
    let mut sim = Sim::with(&[1, 2, 3, 4, 5], |r| {
        r.set_last_n(Some(2), reflector::DEFAULT_AUDIO_LEVEL_ID)
    });
    for id in 1..=4 {
        sim.camera(id, 300);
        sim.voices.insert(id, false);
    }
    sim.run(Duration::from_secs(1));
    // Nobody has talked: the first two members by join order.
    let t = sim.now;
    sim.run(Duration::from_millis(500));
    assert_eq!(sim.video_sources(5, t), vec![video_ssrc(1), video_ssrc(2)]);

    // 3, 4, 1, 2 talk in turn for 1.5 s each (with a 0.5 s pause).
    let mut recent = vec![1u32, 2];
    for talker in [3u32, 4, 1, 2] {
        sim.voices.insert(talker, true);
        sim.run(Duration::from_millis(1500));
        sim.voices.insert(talker, false);
        sim.run(Duration::from_millis(500));
        recent.insert(0, talker);
        recent.dedup();
        recent.truncate(2);
        // Measured over the last second, after the switch has settled.
        let since = sim.now - Duration::from_millis(1000);
        let mut want: Vec<u32> = recent.iter().map(|&p| video_ssrc(p)).collect();
        want.sort_unstable();
        assert_eq!(sim.video_sources(5, since), want, "after {talker} talked");
        assert_eq!(sim.reflector().dominant_speaker(), None, "all quiet now");
    }
    // Each time a source's video (re)appeared at 5, it started at a keyframe.
    let mut restarts = 0;
    for id in 1..=4 {
        let mut last: Option<std::time::Instant> = None;
        for (at, p) in sim.media(5) {
            if p[1] & 0x7f != VP8_PT || p[8..12] != video_ssrc(id).to_be_bytes() {
                continue;
            }
            if last.is_none_or(|l| at.duration_since(l) > Duration::from_millis(100)) {
                assert!(is_key(p), "source {id} resumed without a keyframe");
                restarts += 1;
            }
            last = Some(*at);
        }
    }
    // 1 and 2 from the start, 3 and 4 when they talked, 1 and 2 again on their return.
    assert_eq!(restarts, 6);
    // The talk runs came out as speaking notices.
    let mut speaking = Vec::new();
    while let Some(e) = sim.mesh.poll_event() {
        if let Event::Speaking {
            participant, on, ..
        } = e
        {
            speaking.push((participant, on));
        }
    }
    assert_eq!(
        speaking,
        vec![
            (3, true),
            (3, false),
            (4, true),
            (4, false),
            (1, true),
            (1, false),
            (2, true),
            (2, false)
        ]
    );
    // Video not forwarded under last-N is counted as such.
    assert!(sim.reflector().stats().held_last_n > 0);
}
