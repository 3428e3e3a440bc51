//! Temporal thinning in virtual time: a receiver whose estimate is below the stream's rate
//! gets only the base temporal layer (half the frames); others get everything.

mod common;

use std::time::Duration;

use common::*;
use mesh::{rtcp_write, RtpView};
use reflector::keyframe::{is_droppable, VideoCodec};

fn tl1(p: &[u8]) -> bool {
    is_droppable(VideoCodec::Vp8, RtpView::parse(p).unwrap().payload())
}

#[test]
fn a_short_budget_halves_the_frame_rate_and_nacks_do_not_undo_it() {
    let mut sim = Sim::new(&[1, 2, 3]);
    sim.camera(1, 300);
    sim.cameras[0].temporal = true;
    sim.run(Duration::from_secs(1));
    assert!(sim.reflector().thinned().is_empty());
    // About 720 kbit/s arrive; receiver 2 can take 400.
    let mut buf = [0u8; 64];
    let n = rtcp_write::remb(&mut buf, 0x3002, 400_000, &[video_ssrc(1)]).unwrap();
    sim.rtcp_from(2, &buf[..n]);
    sim.run(Duration::from_millis(20));
    assert_eq!(sim.reflector().thinned(), &[2]);
    let (from2, from3) = (sim.media(2).len(), sim.media(3).len());
    sim.run(Duration::from_secs(2));
    let two = &sim.media(2)[from2..];
    let three = &sim.media(3)[from3..];
    assert!(two.iter().all(|(_, p)| !tl1(p)), "no TL1 frame reached 2");
    assert_eq!(two.len() * 2, three.len(), "half the packets");
    assert!(three.iter().any(|(_, p)| tl1(p)));
    // 2 sees the gaps and NACKs them: the thinned frames are not resent.
    let gap: Vec<u16> = three
        .iter()
        .filter(|(_, p)| tl1(p))
        .map(|(_, p)| u16::from_be_bytes([p[2], p[3]]))
        .take(3)
        .collect();
    let before = sim.media(2).len();
    let n = rtcp_write::nack(&mut buf, 0x3002, video_ssrc(1), &gap).unwrap();
    sim.rtcp_from(2, &buf[..n]);
    assert_eq!(sim.media(2).len(), before);
    // The budget recovers: full frame rate again.
    let n = rtcp_write::remb(&mut buf, 0x3002, 5_000_000, &[video_ssrc(1)]).unwrap();
    sim.rtcp_from(2, &buf[..n]);
    sim.run(Duration::from_millis(20));
    assert!(sim.reflector().thinned().is_empty());
}
