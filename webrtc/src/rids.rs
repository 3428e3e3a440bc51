//! Browser simulcast (RFC 8853): the camera sends up to three encodings, told apart by the
//! RID header extension (RFC 8852) and not by SSRCs in the SDP. The server gives each
//! encoding an SSRC of its own at the answer, so the mesh sees a plain-RTP simulcast sender
//! (`SetSimulcast`, lowest first); this map learns each encoding's browser SSRC from the
//! first packet that names its rid and rewrites the SSRC on the way in, and the SSRCs in
//! the server's reports and feedback (PLI, FIR, NACK, REMB) back on the way out. Fixed
//! arrays: nothing is allocated per packet.

use crate::slots::{be32, put32, rtcp_media_sources};

/// Encodings one camera may send (the mesh's `MAX_LAYERS`).
pub const MAX_RIDS: usize = 3;
/// Longest rid kept (RFC 8851 allows more; browsers use one to a few characters).
const MAX_RID_LEN: usize = 16;

#[derive(Clone, Copy, Debug, Default)]
struct Layer {
    rid: [u8; MAX_RID_LEN],
    len: u8,
    /// The SSRC the mesh knows the encoding by.
    ssrc: u32,
    /// The browser's SSRC for it, once seen (0: not yet).
    theirs: u32,
}

/// The rid map of one browser's camera.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rids {
    /// The RID extension's id (0: no simulcast).
    ext: u8,
    n: usize,
    layers: [Layer; MAX_RIDS],
}

/// Whether `rid` is a rid this map can hold (RFC 8851: letters, digits, `-` and `_`).
pub fn valid_rid(rid: &str) -> bool {
    !rid.is_empty()
        && rid.len() <= MAX_RID_LEN
        && rid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Rids {
    /// A map for the encodings `layers` ((rid, server SSRC), any order) sent with the RID
    /// extension `ext`. `None` unless there are 2 to [`MAX_RIDS`] valid, distinct rids.
    pub fn new(ext: u8, layers: &[(&str, u32)]) -> Option<Rids> {
        if !(1..=14).contains(&ext) || !(2..=MAX_RIDS).contains(&layers.len()) {
            return None;
        }
        let mut r = Rids {
            ext,
            ..Rids::default()
        };
        for (i, (rid, ssrc)) in layers.iter().enumerate() {
            if !valid_rid(rid) || layers[..i].iter().any(|(o, _)| o == rid) {
                return None;
            }
            let l = &mut r.layers[i];
            l.rid[..rid.len()].copy_from_slice(rid.as_bytes());
            l.len = rid.len() as u8;
            l.ssrc = *ssrc;
        }
        r.n = layers.len();
        Some(r)
    }

    /// Whether the camera sends simulcast.
    pub fn is_on(&self) -> bool {
        self.n > 0
    }

    fn live(&self) -> &[Layer] {
        &self.layers[..self.n]
    }

    /// An RTP packet from the browser: an encoding's packets get its server SSRC. A packet
    /// whose SSRC is not yet known is matched by its rid; one with neither is left as it
    /// is (the mesh drops an unknown source).
    pub fn inbound(&mut self, pkt: &mut [u8]) {
        if self.n == 0 || pkt.len() < 12 {
            return;
        }
        let ssrc = be32(pkt, 8);
        if let Some(l) = self.live().iter().find(|l| l.theirs == ssrc) {
            put32(pkt, 8, l.ssrc);
            return;
        }
        let Some(rid) = crate::twcc::extension(pkt, self.ext) else {
            return;
        };
        let n = self.n;
        let Some(l) = self.layers[..n]
            .iter_mut()
            .find(|l| &l.rid[..usize::from(l.len)] == rid)
        else {
            return;
        };
        // A browser that restarts an encoding picks a new SSRC: the rid moves with it.
        l.theirs = ssrc;
        put32(pkt, 8, l.ssrc);
    }

    /// The browser's sender reports name its encodings by the server's SSRCs.
    pub fn rtcp_in(&self, pkt: &mut [u8]) {
        if self.n == 0 {
            return;
        }
        crate::slots::for_each_packet(pkt, |p| {
            if p[1] == 200 && p.len() >= 8 {
                if let Some(l) = self.live().iter().find(|l| l.theirs == be32(p, 4)) {
                    put32(p, 4, l.ssrc);
                }
            }
        });
    }

    /// Reports and feedback from the server about an encoding name the browser's SSRC.
    pub fn rtcp_out(&self, pkt: &mut [u8]) {
        if self.n == 0 {
            return;
        }
        rtcp_media_sources(pkt, |p, at| {
            let ours = be32(p, at);
            if let Some(l) = self.live().iter().find(|l| l.ssrc == ours && l.theirs != 0) {
                put32(p, at, l.theirs);
            }
        });
    }
}

/// Orders a camera's rids from the lowest quality encoding to the highest. Browsers' rids
/// carry no resolution, so the usual names decide (`q`/`h`/`f`, `l`/`m`/`h`, `low`/`mid`/
/// `high`); other names keep the offer's order, taken as lowest first, as the web client
/// and most SFU examples send them (`scaleResolutionDownBy` 4, 2, 1).
pub fn lowest_first(rids: &[String]) -> Vec<String> {
    let has = |n: &str| rids.iter().any(|r| r.eq_ignore_ascii_case(n));
    let rank = |r: &str| -> Option<u8> {
        let r = r.to_ascii_lowercase();
        if has("q") || has("f") {
            ["q", "h", "f"].iter().position(|x| *x == r)
        } else if has("l") || has("m") {
            ["l", "m", "h"].iter().position(|x| *x == r)
        } else {
            ["low", "mid", "high"].iter().position(|x| *x == r)
        }
        .map(|p| p as u8)
    };
    let mut out = rids.to_vec();
    if out.iter().all(|r| rank(r).is_some()) {
        out.sort_by_key(|r| rank(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RTP packet with a one-byte-header extension `id` holding `rid`.
    fn with_rid(ssrc: u32, id: u8, rid: &str) -> Vec<u8> {
        let mut p = vec![0x90, 96, 0, 1, 0, 0, 0, 1];
        p.extend_from_slice(&ssrc.to_be_bytes());
        let mut ext = vec![(id << 4) | (rid.len() as u8 - 1)];
        ext.extend_from_slice(rid.as_bytes());
        while ext.len() % 4 != 0 {
            ext.push(0);
        }
        p.extend_from_slice(&[0xbe, 0xde, 0, (ext.len() / 4) as u8]);
        p.extend_from_slice(&ext);
        p.extend_from_slice(&[1, 2, 3]);
        p
    }

    fn plain(ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 96, 0, 2, 0, 0, 0, 2];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p
    }

    #[test]
    fn each_encoding_gets_its_server_ssrc_learnt_from_its_rid() {
        let mut r = Rids::new(4, &[("q", 100), ("h", 200), ("f", 300)]).unwrap();
        // Before any rid: left alone.
        let mut p = plain(7);
        r.inbound(&mut p);
        assert_eq!(be32(&p, 8), 7);
        let mut p = with_rid(7, 4, "h");
        r.inbound(&mut p);
        assert_eq!(be32(&p, 8), 200);
        // Later packets carry no rid: the SSRC is known now.
        let mut p = plain(7);
        r.inbound(&mut p);
        assert_eq!(be32(&p, 8), 200);
        let mut p = with_rid(9, 4, "f");
        r.inbound(&mut p);
        assert_eq!(be32(&p, 8), 300);
        // An unknown rid, or the rid in another extension id: left alone.
        let mut p = with_rid(11, 4, "x");
        r.inbound(&mut p);
        assert_eq!(be32(&p, 8), 11);
        let mut p = with_rid(12, 5, "q");
        r.inbound(&mut p);
        assert_eq!(be32(&p, 8), 12);

        // A PLI to encoding 300 goes to the browser's 9; to 100 (not yet seen) as it is.
        let mut pli = vec![0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0];
        put32(&mut pli, 8, 300);
        r.rtcp_out(&mut pli);
        assert_eq!(be32(&pli, 8), 9);
        put32(&mut pli, 8, 100);
        r.rtcp_out(&mut pli);
        assert_eq!(be32(&pli, 8), 100);
        // The browser's SR for its 7 names 200.
        let mut sr = vec![0x80, 200, 0, 6];
        sr.extend_from_slice(&7u32.to_be_bytes());
        sr.extend_from_slice(&[0; 20]);
        r.rtcp_in(&mut sr);
        assert_eq!(be32(&sr, 4), 200);
    }

    #[test]
    fn bad_layouts_are_no_simulcast() {
        assert!(Rids::new(4, &[("q", 1)]).is_none());
        assert!(Rids::new(4, &[("q", 1), ("q", 2)]).is_none());
        assert!(Rids::new(0, &[("q", 1), ("f", 2)]).is_none());
        assert!(Rids::new(4, &[("a b", 1), ("f", 2)]).is_none());
        assert!(Rids::new(4, &[("a", 1), ("b", 2), ("c", 3), ("d", 4)]).is_none());
        assert!(!Rids::default().is_on());
    }

    #[test]
    fn known_names_sort_lowest_first() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(lowest_first(&s(&["f", "h", "q"])), s(&["q", "h", "f"]));
        assert_eq!(lowest_first(&s(&["h", "m", "l"])), s(&["l", "m", "h"]));
        assert_eq!(lowest_first(&s(&["high", "low"])), s(&["low", "high"]));
        assert_eq!(
            lowest_first(&s(&["r0", "r1", "r2"])),
            s(&["r0", "r1", "r2"])
        );
    }
}
