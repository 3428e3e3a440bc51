//! VP8 picture IDs and TL0PICIDX that run on for one receiver across its simulcast
//! switches and thinned frames.
//!
//! Each simulcast encoding numbers its frames on its own, from a random start. A receiver
//! switched from one to another would see the picture ID jump (backwards half the time),
//! and a thinned receiver sees gaps where withheld frames were. libwebrtc's VP8 reference
//! finder waits for the pictures in a gap before it decodes what follows, so such a stream
//! freezes until its 3 s keyframe timeout. The receiver therefore gets its own numbering:
//! the source's plus a delta, set at each switch so the keyframe follows the last picture
//! it got, and moved back by one for each frame withheld from it.

use mesh::Patch;
use rtpvideo::vp8::{Descriptor, PICTURE_ID_AT};

const PID_MASK_LONG: u16 = 0x7fff;
const PID_MASK_SHORT: u16 = 0x7f;

/// One receiver's numbering of a simulcast source's VP8 pictures.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PictureIds {
    pid_delta: u16,
    tl0_delta: u8,
    /// The newest picture ID and TL0PICIDX it was sent, in its numbering.
    last_pid: Option<u16>,
    last_tl0: Option<u8>,
    /// The delta each recent picture went out with, by source picture ID (+1; 0: empty),
    /// so a resend carries the number the first copy had.
    recent: [(u16, u16); RECENT],
}

/// Pictures whose delta is remembered for resends.
const RECENT: usize = 32;

impl PictureIds {
    /// The receiver switches to the stream whose keyframe starts with `payload`: its
    /// pictures follow on from the last it got.
    pub(crate) fn switch(&mut self, payload: &[u8]) {
        let Some(d) = Descriptor::parse(payload) else {
            return;
        };
        if let (Some(last), Some(p)) = (self.last_pid, d.picture_id) {
            self.pid_delta = last.wrapping_add(1).wrapping_sub(p) & PID_MASK_LONG;
        }
        if let (Some(last), Some(t)) = (self.last_tl0, d.tl0_pic_idx) {
            self.tl0_delta = last.wrapping_add(1).wrapping_sub(t);
        }
    }

    /// A packet withheld from the receiver: when it starts a picture, the pictures after
    /// it close the gap.
    pub(crate) fn skip(&mut self, payload: &[u8]) {
        if let Some(d) = Descriptor::parse(payload) {
            if d.start && d.partition == 0 && d.picture_id.is_some() {
                self.pid_delta = self.pid_delta.wrapping_sub(1) & PID_MASK_LONG;
            }
        }
    }

    /// The bytes a resent packet needs: the picture ID its first copy had. None when
    /// that is no longer known (the packet is better not resent than misnumbered).
    pub(crate) fn resend_patch(&self, payload: &[u8], payload_at: usize) -> Option<Patch> {
        let mut ids = *self;
        if let Some(p) = Descriptor::parse(payload).and_then(|d| d.picture_id) {
            let (src, delta) = self.recent[usize::from(p) % RECENT];
            if src != p + 1 {
                return None;
            }
            ids.pid_delta = delta;
        }
        Some(ids.patch(payload, payload_at))
    }

    /// The bytes the receiver's copy of a packet needs, its payload at `payload_at` in the
    /// packet; empty where its numbering is the source's.
    pub(crate) fn patch(&mut self, payload: &[u8], payload_at: usize) -> Patch {
        let mut patch = Patch::default();
        let Some(d) = Descriptor::parse(payload) else {
            return patch;
        };
        let mut at = payload_at + PICTURE_ID_AT;
        if let Some(p) = d.picture_id {
            let mask = if d.long_picture_id {
                PID_MASK_LONG
            } else {
                PID_MASK_SHORT
            };
            let slot = &mut self.recent[usize::from(p) % RECENT];
            if slot.0 != p + 1 {
                *slot = (p + 1, self.pid_delta);
            }
            let pid = p.wrapping_add(self.pid_delta) & mask;
            let newer = self
                .last_pid
                .is_none_or(|l| pid.wrapping_sub(l) & mask <= mask / 2);
            if newer {
                self.last_pid = Some(pid);
            }
            if self.pid_delta != 0 {
                if d.long_picture_id {
                    let [hi, lo] = pid.to_be_bytes();
                    patch.set(at, 0x80 | hi);
                    patch.set(at + 1, lo);
                } else {
                    patch.set(at, pid as u8);
                }
            }
            at += if d.long_picture_id { 2 } else { 1 };
        }
        if let Some(t) = d.tl0_pic_idx {
            let tl0 = t.wrapping_add(self.tl0_delta);
            if self.last_tl0.is_none_or(|l| tl0.wrapping_sub(l) <= 0x7f) {
                self.last_tl0 = Some(tl0);
            }
            if self.tl0_delta != 0 {
                patch.set(at, tl0);
            }
        }
        patch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VP8 descriptor with a 15-bit picture ID, TL0PICIDX and TID; `start` sets S.
    fn desc(pid: u16, tl0: u8, tid: u8, start: bool) -> Vec<u8> {
        let [hi, lo] = pid.to_be_bytes();
        vec![
            0x80 | if start { 0x10 } else { 0 },
            0xe0,
            0x80 | hi,
            lo,
            tl0,
            tid << 6,
            0xaa,
        ]
    }

    fn ids(p: &[u8]) -> (u16, u8) {
        let d = Descriptor::parse(p).unwrap();
        (d.picture_id.unwrap(), d.tl0_pic_idx.unwrap())
    }

    /// What the receiver gets: the payload with the patch applied (payload at byte 12).
    fn sent(ids_: &mut PictureIds, payload: &[u8]) -> Vec<u8> {
        let mut pkt = vec![0u8; 12];
        pkt.extend_from_slice(payload);
        ids_.patch(payload, 12).apply(&mut pkt);
        pkt.split_off(12)
    }

    #[test]
    fn a_switch_continues_the_receivers_pictures_and_thinning_closes_gaps() {
        let mut r = PictureIds::default();
        // The low layer, as it comes: nothing to patch.
        for (pid, tl0) in [(100, 7), (101, 7), (102, 8)] {
            let p = desc(pid, tl0, 0, true);
            assert_eq!(sent(&mut r, &p), p);
        }
        // Switched to a layer numbered from 30,000 (behind, in 15-bit order): its
        // keyframe is picture 103, TL0PICIDX 9 for this receiver, and so on.
        let key = desc(30_000, 200, 0, true);
        r.switch(&key);
        assert_eq!(ids(&sent(&mut r, &key)), (103, 9));
        assert_eq!(ids(&sent(&mut r, &desc(30_001, 200, 2, true))), (104, 9));
        // Picture 30,002 (a TL1 frame, two packets) is withheld: 30,003 follows 104.
        r.skip(&desc(30_002, 200, 1, true));
        r.skip(&desc(30_002, 200, 1, false));
        assert_eq!(ids(&sent(&mut r, &desc(30_003, 201, 0, true))), (105, 10));
        // The payload after the descriptor is untouched.
        assert_eq!(sent(&mut r, &desc(30_004, 201, 2, true))[6], 0xaa);
        // A resend of 30,001 carries the 104 its first copy had, though the delta moved
        // since; a picture never sent is not resent.
        let mut pkt = vec![0u8; 12];
        let p = desc(30_001, 200, 2, false);
        pkt.extend_from_slice(&p);
        r.resend_patch(&p, 12).unwrap().apply(&mut pkt);
        assert_eq!(ids(&pkt[12..]), (104, 9));
        assert!(r.resend_patch(&desc(29_000, 190, 0, true), 12).is_none());
    }

    #[test]
    fn picture_ids_wrap_in_their_own_width() {
        let mut r = PictureIds::default();
        sent(&mut r, &desc(0x7ffe, 255, 0, true));
        r.switch(&desc(5, 3, 0, true));
        assert_eq!(ids(&sent(&mut r, &desc(5, 3, 0, true))), (0x7fff, 0));
        assert_eq!(ids(&sent(&mut r, &desc(6, 4, 0, true))), (0, 1));
        // A 7-bit picture ID stays 7 bits.
        let short = [0x90, 0x80, 0x05, 0xaa];
        let mut q = PictureIds::default();
        sent(&mut q, &[0x90, 0x80, 0x7f, 0xaa]);
        q.switch(&short);
        let got = sent(&mut q, &short);
        assert_eq!(Descriptor::parse(&got).unwrap().picture_id, Some(0));
        assert_eq!(got[2] & 0x80, 0, "no M bit added");
    }
}
