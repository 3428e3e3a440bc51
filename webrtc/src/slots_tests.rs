use super::*;

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xde, 0xad];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

fn head(p: &[u8]) -> (u8, u16, u32, u32) {
    (
        p[1],
        u16::from_be_bytes([p[2], p[3]]),
        be32(p, 4),
        be32(p, 8),
    )
}

/// Two audio and one video slot; the browser calls Opus 109 and VP8 120 (as Firefox does).
fn table() -> Slots {
    let mut s = Slots::default();
    s.add_slot(SlotKind::Audio, 1000);
    s.add_slot(SlotKind::Audio, 1001);
    s.add_slot(SlotKind::Video, 2000);
    s.map_pt(SlotKind::Audio, 111, 109);
    s.map_pt(SlotKind::Video, 97, 120);
    s
}

#[test]
fn each_stream_takes_its_own_slot_and_keeps_it() {
    let now = Instant::now();
    let mut s = table();
    let mut a = rtp(111, 7, 960, 0xaaaa);
    assert_eq!(s.outbound(now, &mut a), Ok(Some(0)));
    assert_eq!(head(&a), (109, 7, 960, 1000));
    let mut b = rtp(111 | 0x80, 50, 100, 0xbbbb);
    assert_eq!(s.outbound(now, &mut b), Ok(Some(1)));
    // The marker bit stays, the payload type is the browser's.
    assert_eq!(head(&b), (109 | 0x80, 50, 100, 1001));
    let mut a2 = rtp(111, 8, 1920, 0xaaaa);
    assert_eq!(s.outbound(now, &mut a2), Ok(None));
    assert_eq!(head(&a2).3, 1000);
    assert_eq!(&a2[12..], &[0xde, 0xad], "the payload is untouched");
    // A third audio stream finds both slots live.
    let mut c = rtp(111, 1, 1, 0xcccc);
    assert_eq!(s.outbound(now, &mut c), Err(SlotDrop::NoSlot));
    // Video takes the video slot, and a codec the browser was not given is refused.
    let mut v = rtp(97, 3, 3, 0xaaab);
    assert_eq!(s.outbound(now, &mut v), Ok(Some(2)));
    assert_eq!(head(&v), (120, 3, 3, 2000));
    let mut h = rtp(96, 3, 3, 0xaaac);
    assert_eq!(s.outbound(now, &mut h), Err(SlotDrop::NoCodec));
    assert_eq!(s.source(0), Some(0xaaaa));
    assert_eq!(s.source(2), Some(0xaaab));
}

#[test]
fn an_idle_slot_goes_to_the_next_stream_and_its_numbering_runs_on() {
    let t0 = Instant::now();
    let mut s = table();
    let mut a = rtp(111, 100, 5000, 0xaaaa);
    s.outbound(t0, &mut a).unwrap();
    let mut b = rtp(111, 9, 9, 0xbbbb);
    s.outbound(t0, &mut b).unwrap();
    // 0xaaaa stops; after IDLE a new stream takes its slot.
    let later = t0 + IDLE + Duration::from_millis(100);
    let mut b2 = rtp(111, 10, 969, 0xbbbb);
    s.outbound(later, &mut b2).unwrap();
    let mut c = rtp(111, 60_000, 4_000_000_000, 0xcccc);
    assert_eq!(s.outbound(later, &mut c), Ok(Some(0)));
    let (_, seq, ts, ssrc) = head(&c);
    assert_eq!((seq, ssrc), (101, 1000), "the slot's sequence continues");
    let gap = (IDLE.as_millis() as u32 + 100) * 48;
    assert_eq!(ts, 5000 + gap, "its clock runs on over the silence");
    // The next packet of the new stream follows on.
    let mut c2 = rtp(111, 60_001, 4_000_000_960, 0xcccc);
    assert_eq!(s.outbound(later, &mut c2), Ok(None));
    assert_eq!(head(&c2).1, 102);
    assert_eq!(head(&c2).2, 5000 + gap + 960);
    // A late retransmission keeps its place in the numbering.
    let mut old = rtp(111, 60_000, 4_000_000_000, 0xcccc);
    s.outbound(later, &mut old).unwrap();
    assert_eq!(head(&old).1, 101);
}

#[test]
fn browser_rtcp_about_a_slot_names_the_members_stream() {
    let now = Instant::now();
    let mut s = table();
    s.outbound(now, &mut rtp(111, 1, 1, 0xaaaa)).unwrap();
    s.outbound(now, &mut rtp(97, 1, 1, 0xbbbb)).unwrap();
    // RR with one block about slot 1000, then a PLI and a NACK about 2000, a FIR entry
    // and a REMB covering both.
    let mut c = Vec::new();
    c.extend_from_slice(&[0x81, 201, 0, 7, 0, 0, 0, 1]);
    c.extend_from_slice(&1000u32.to_be_bytes());
    c.extend_from_slice(&[0; 20]);
    c.extend_from_slice(&[0x81, 206, 0, 2, 0, 0, 0, 1]);
    c.extend_from_slice(&2000u32.to_be_bytes());
    c.extend_from_slice(&[0x81, 205, 0, 3, 0, 0, 0, 1]);
    c.extend_from_slice(&2000u32.to_be_bytes());
    c.extend_from_slice(&[0, 5, 0, 0]);
    c.extend_from_slice(&[0x84, 206, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0]);
    c.extend_from_slice(&2000u32.to_be_bytes());
    c.extend_from_slice(&[1, 0, 0, 0]);
    c.extend_from_slice(&[0x8f, 206, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0]);
    c.extend_from_slice(b"REMB");
    c.extend_from_slice(&[2, 0x10, 0, 0]);
    c.extend_from_slice(&1000u32.to_be_bytes());
    c.extend_from_slice(&2000u32.to_be_bytes());
    s.inbound(&mut c);
    assert_eq!(be32(&c, 8), 0xaaaa, "the report block");
    assert_eq!(be32(&c, 32 + 8), 0xbbbb, "the PLI");
    assert_eq!(be32(&c, 44 + 8), 0xbbbb, "the NACK");
    assert_eq!(be32(&c, 60 + 12), 0xbbbb, "the FIR entry");
    assert_eq!(
        (be32(&c, 80 + 20), be32(&c, 80 + 24)),
        (0xaaaa, 0xbbbb),
        "the REMB"
    );
    // The browser's own SSRCs are left alone.
    assert_eq!(be32(&c, 4), 1);
}

#[test]
fn a_members_sender_report_goes_out_under_its_slot() {
    let t0 = Instant::now();
    let mut s = table();
    s.outbound(t0, &mut rtp(111, 1, 500, 0xaaaa)).unwrap();
    s.outbound(t0 + IDLE * 2, &mut rtp(111, 1, 500, 0xcccc))
        .unwrap();
    let mut sr = vec![0x80, 200, 0, 6];
    sr.extend_from_slice(&0xaaaau32.to_be_bytes());
    sr.extend_from_slice(&[0; 8]);
    sr.extend_from_slice(&700u32.to_be_bytes());
    sr.extend_from_slice(&[0; 8]);
    s.outbound(t0, &mut sr).unwrap();
    assert_eq!(be32(&sr, 4), 1000);
    assert_eq!(be32(&sr, 16), 700);
    // 0xcccc went to slot 1001 (never used) with its own timeline.
    let mut sr2 = sr.clone();
    sr2[4..8].copy_from_slice(&0xccccu32.to_be_bytes());
    s.outbound(t0, &mut sr2).unwrap();
    assert_eq!(be32(&sr2, 4), 1001);
}

#[test]
fn without_slots_packets_keep_their_ssrc_and_truncated_input_is_harmless() {
    let now = Instant::now();
    let mut s = Slots::default();
    let mut a = rtp(111, 1, 2, 0xaaaa);
    assert_eq!(s.outbound(now, &mut a), Ok(None));
    assert_eq!(head(&a), (111, 1, 2, 0xaaaa));
    s.map_pt(SlotKind::Audio, 111, 109);
    s.outbound(now, &mut a).unwrap();
    assert_eq!(head(&a), (109, 1, 2, 0xaaaa));
    let mut short = vec![0x80, 111, 0];
    assert_eq!(s.outbound(now, &mut short), Err(SlotDrop::Malformed));
    // Inbound: the browser's payload type becomes ours; RTCP shorter than it says is left.
    let mut b = rtp(109, 1, 2, 5);
    s.inbound(&mut b);
    assert_eq!(b[1], 111);
    let mut t = table();
    t.outbound(now, &mut rtp(111, 1, 1, 0xaaaa)).unwrap();
    let mut cut = vec![0x81, 201, 0, 7, 0, 0, 0, 1, 0, 0, 3, 232];
    t.inbound(&mut cut);
    assert_eq!(be32(&cut, 8), 1000);
    for n in 0..40 {
        let mut junk: Vec<u8> = (0..n).map(|i| (i * 37 + 200) as u8).collect();
        t.inbound(&mut junk);
        let _ = t.outbound(now, &mut junk);
    }
}

#[test]
fn retransmissions_go_out_as_rtx_of_the_slot_in_its_numbering() {
    use protocol::codec::{rtx_ssrc, BROWSER_RTX_PT};
    let t0 = Instant::now();
    let mut s = table();
    s.set_rtx(2, 2001);
    s.map_rtx(120, 121);
    assert!(s.has_rtx());
    // Slot 2 carried another stream first, so the new one is renumbered.
    s.outbound(t0, &mut rtp(97, 500, 0, 0xdddd)).unwrap();
    let later = t0 + IDLE * 2;
    let mut v = rtp(97, 10, 90_000, 0xbbbb);
    assert_eq!(s.outbound(later, &mut v), Ok(Some(2)));
    let shifted = head(&v).1;
    assert_eq!(shifted, 501);
    // The reflector's RTX for packet 10 of 0xbbbb: header, then OSN 10, then payload.
    let mut r = rtp(BROWSER_RTX_PT, 77, 90_000, rtx_ssrc(0xbbbb));
    r.splice(12..12, 10u16.to_be_bytes());
    assert_eq!(s.outbound(later, &mut r), Ok(None));
    let (pt, seq, ts, ssrc) = head(&r);
    assert_eq!((pt, seq, ssrc), (121, 77, 2001));
    assert_eq!(
        ts,
        head(&v).2,
        "the repaired packet's timestamp, as the slot numbers it"
    );
    assert_eq!(
        u16::from_be_bytes([r[12], r[13]]),
        shifted,
        "the OSN in the slot's numbering"
    );
    // RTX for a stream no slot carries, or to a slot without RTX, is not sent.
    let mut stray = rtp(BROWSER_RTX_PT, 1, 1, rtx_ssrc(0x9999));
    stray.splice(12..12, [0, 1]);
    assert_eq!(s.outbound(later, &mut stray), Err(SlotDrop::NoSlot));
    s.outbound(later, &mut rtp(111, 1, 1, 0xaaaa)).unwrap();
    let mut audio_rtx = rtp(BROWSER_RTX_PT, 1, 1, rtx_ssrc(0xaaaa));
    audio_rtx.splice(12..12, [0, 1]);
    assert_eq!(s.outbound(later, &mut audio_rtx), Err(SlotDrop::NoSlot));
}

#[test]
fn a_follower_plays_only_the_followed_source_and_switches_without_a_gap() {
    let t0 = Instant::now();
    let mut s = table();
    s.follow(SlotKind::Audio, &[0xaaaa]);
    let mut a = rtp(111, 100, 5000, 0xaaaa);
    assert_eq!(s.outbound(t0, &mut a), Ok(Some(0)));
    // Another speaker is not played, though a slot is free.
    let mut b = rtp(111, 9, 9, 0xbbbb);
    assert_eq!(s.outbound(t0, &mut b), Err(SlotDrop::NotWanted));
    // Video follows nobody yet: it takes its slot as it comes.
    let mut v = rtp(97, 1, 1, 0xcccc);
    assert_eq!(s.outbound(t0, &mut v), Ok(Some(2)));
    // The speaker changes: the new one takes the old one's slot at once (no idle wait),
    // its numbering running on; the old one is no longer played.
    s.follow(SlotKind::Audio, &[0xbbbb]);
    let t1 = t0 + Duration::from_millis(20);
    let mut b2 = rtp(111, 10, 969, 0xbbbb);
    assert_eq!(s.outbound(t1, &mut b2), Ok(Some(0)));
    assert_eq!((head(&b2).1, head(&b2).3), (101, 1000));
    let mut a2 = rtp(111, 101, 5960, 0xaaaa);
    assert_eq!(s.outbound(t1, &mut a2), Err(SlotDrop::NotWanted));
    // An empty list: streams take free slots as they come again.
    s.follow(SlotKind::Audio, &[]);
    let mut a3 = rtp(111, 102, 6920, 0xaaaa);
    assert_eq!(s.outbound(t1, &mut a3), Ok(Some(1)));
}

#[test]
fn a_send_only_browser_gets_no_media() {
    let mut s = table();
    s.set_send_only();
    let mut a = rtp(111, 1, 1, 0xaaaa);
    assert_eq!(s.outbound(Instant::now(), &mut a), Err(SlotDrop::NotWanted));
    let mut short = vec![0x80, 111, 0];
    assert_eq!(
        s.outbound(Instant::now(), &mut short),
        Err(SlotDrop::Malformed)
    );
}
