//! Parser and writer tests, with packets from the RFCs' layouts and real browser captures.

use super::*;
use crate::rtcp_write as w;

fn all(data: &[u8]) -> Vec<Rtcp<'_>> {
    packets(data).map(|p| p.expect("valid")).collect()
}

#[test]
fn compound_sr_sdes_round_trip() {
    let mut buf = [0u8; 64];
    let n = w::sender_report(&mut buf, 0x1234, 0xdead_beef_0000_0001, 9000, 10, 1200).unwrap();
    // An SDES with one CNAME chunk, as a browser sends after its SR.
    let sdes = [
        0x81, 202, 0, 3, 0, 0, 0x12, 0x34, 1, 3, b'a', b'b', b'c', 0, 0, 0,
    ];
    let mut data = buf[..n].to_vec();
    data.extend_from_slice(&sdes);
    let got = all(&data);
    assert_eq!(got.len(), 2);
    match got[0] {
        Rtcp::SenderReport(sr) => {
            assert_eq!(sr.ssrc, 0x1234);
            assert_eq!(sr.ntp, 0xdead_beef_0000_0001);
            assert_eq!((sr.rtp_timestamp, sr.packets, sr.octets), (9000, 10, 1200));
            assert!(sr.blocks.is_empty());
        }
        ref other => panic!("{other:?}"),
    }
    assert_eq!(got[1], Rtcp::Sdes);
    assert!(is_valid(&data));
    assert_eq!(sender_ssrc(&data), Some(0x1234));
}

#[test]
fn receiver_report_blocks_round_trip() {
    let b = ReportBlock {
        ssrc: 77,
        fraction_lost: 25,
        cumulative_lost: -3,
        highest_seq: 70_000,
        jitter: 12,
        last_sr: 0xabcd,
        delay_since_last_sr: 65536,
    };
    let mut buf = [0u8; 128];
    let n = w::receiver_report(&mut buf, 5, &[b, b]).unwrap();
    assert_eq!(n, 8 + 48);
    match all(&buf[..n])[..] {
        [Rtcp::ReceiverReport { ssrc: 5, blocks }] => {
            assert_eq!(blocks.len(), 2);
            assert!(blocks.iter().all(|got| got == b));
        }
        ref other => panic!("{other:?}"),
    }
    // Too small a buffer writes nothing.
    assert_eq!(w::receiver_report(&mut buf[..20], 5, &[b]), None);
}

#[test]
fn nack_packs_and_expands() {
    let mut buf = [0u8; 128];
    let lost = [100u16, 101, 116, 117, 65535, 0, 3];
    let n = w::nack(&mut buf, 1, 2, &lost).unwrap();
    match all(&buf[..n])[..] {
        [Rtcp::Nack(nack)] => {
            assert_eq!((nack.sender, nack.media), (1, 2));
            let mut got: Vec<u16> = nack.lost().collect();
            got.sort_unstable();
            let mut want = lost.to_vec();
            want.sort_unstable();
            assert_eq!(got, want);
        }
        ref other => panic!("{other:?}"),
    }
    // 100 takes 101..=116 in its BLP; 117 starts a new entry; 65535 covers 0 and 3 wrapping.
    assert_eq!(n, 12 + 4 * 3);
    assert_eq!(w::nack(&mut buf, 1, 2, &[]), None);
}

#[test]
fn nack_from_rfc_layout() {
    // PID 0x0010, BLP 0b101: lost 16, 17, 19.
    let data = [
        0x81, 205, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0x00, 0x10, 0x00, 0x05,
    ];
    match all(&data)[..] {
        [Rtcp::Nack(n)] => assert_eq!(n.lost().collect::<Vec<_>>(), vec![16, 17, 19]),
        ref other => panic!("{other:?}"),
    }
}

#[test]
fn pli_fir_remb_round_trip() {
    let mut buf = [0u8; 64];
    let n = w::pli(&mut buf, 9, 10).unwrap();
    assert_eq!(
        all(&buf[..n]),
        vec![Rtcp::Pli {
            sender: 9,
            media: 10
        }]
    );
    let n = w::fir(&mut buf, 9, 11, 7).unwrap();
    match all(&buf[..n])[..] {
        [Rtcp::Fir(f)] => {
            assert_eq!(f.sender, 9);
            assert_eq!(f.entries().collect::<Vec<_>>(), vec![(11, 7)]);
        }
        ref other => panic!("{other:?}"),
    }
    let n = w::remb(&mut buf, 9, 1_500_000, &[11, 12]).unwrap();
    match all(&buf[..n])[..] {
        [Rtcp::Remb(r)] => {
            // 18-bit mantissa: exact to within 2^exp.
            assert!(r.bits_per_sec <= 1_500_000 && r.bits_per_sec > 1_499_000);
            assert_eq!(r.ssrcs.iter().collect::<Vec<_>>(), vec![11, 12]);
        }
        ref other => panic!("{other:?}"),
    }
}

#[test]
fn remb_from_chrome_capture() {
    // Chrome: REMB 0x0e_e1_3c mantissa/exp for one SSRC.
    let data = [
        0x8f, 206, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0, b'R', b'E', b'M', b'B', 1, 0x0e, 0xe1, 0x3c, 0x11,
        0x22, 0x33, 0x44,
    ];
    match all(&data)[..] {
        [Rtcp::Remb(r)] => {
            // exp 3, mantissa 0x2e13c = 188732.
            assert_eq!(r.bits_per_sec, 188_732 << 3);
            assert_eq!(r.ssrcs.iter().collect::<Vec<_>>(), vec![0x1122_3344]);
        }
        ref other => panic!("{other:?}"),
    }
}

#[test]
fn transport_cc_counts_received_and_lost() {
    // Base 100, 10 statuses: a run chunk of 3 small-delta, then a 2-bit vector chunk
    // (7 symbols: small, lost, large, lost, small, small, lost): 6 small deltas, 1 large.
    let mut data = vec![0x8f, 205, 0, 0];
    data.extend_from_slice(&1u32.to_be_bytes());
    data.extend_from_slice(&2u32.to_be_bytes());
    data.extend_from_slice(&100u16.to_be_bytes());
    data.extend_from_slice(&10u16.to_be_bytes());
    data.extend_from_slice(&[0, 0, 5, 3]); // reference time 5, fb count 3
    data.extend_from_slice(&(0x2000u16 | 3).to_be_bytes()); // run: symbol 1, length 3
                                                            // 2-bit vector: 01 00 10 00 01 01 00
    let v: u16 = 0xc000 | 0b01_00_10_00_01_01_00;
    data.extend_from_slice(&v.to_be_bytes());
    data.extend_from_slice(&[4, 4, 4, 4, 4, 4]); // 6 small deltas
    data.extend_from_slice(&(-8i16).to_be_bytes()); // 1 large
    while data.len() % 4 != 0 {
        data.push(0);
    }
    let words = (data.len() / 4 - 1) as u16;
    data[2..4].copy_from_slice(&words.to_be_bytes());
    match all(&data)[..] {
        [Rtcp::TransportCc(t)] => {
            assert_eq!((t.base_seq, t.status_count), (100, 10));
            assert_eq!((t.reference_time, t.feedback_count), (5, 3));
            assert_eq!((t.received, t.lost), (7, 3));
            assert_eq!(t.delta_sum, 24 - 8);
        }
        ref other => panic!("{other:?}"),
    }
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    assert!(!is_valid(&[]));
    assert!(!is_valid(&[0x80, 201, 0]));
    // Length beyond the buffer.
    assert!(!is_valid(&[0x80, 201, 0, 2, 0, 0, 0, 1]));
    // Version 1.
    assert!(!is_valid(&[0x40, 201, 0, 1, 0, 0, 0, 1]));
    // RR claiming a block it does not carry.
    assert!(!is_valid(&[0x81, 201, 0, 1, 0, 0, 0, 1]));
    // Padding count of zero.
    assert!(!is_valid(&[0xa0, 201, 0, 1, 0, 0, 0, 0]));
    // A good packet followed by garbage: the good one comes out, then one error, then none.
    let mut it = packets(&[0x80, 201, 0, 1, 0, 0, 0, 1, 0x80]);
    assert!(matches!(it.next(), Some(Ok(Rtcp::ReceiverReport { .. }))));
    assert_eq!(it.next(), Some(Err(ParseError::Truncated)));
    assert_eq!(it.next(), None);
}

#[test]
fn every_prefix_and_first_byte_is_safe() {
    let mut buf = [0u8; 256];
    let mut data = Vec::new();
    let n = w::sender_report(&mut buf, 1, 2, 3, 4, 5).unwrap();
    data.extend_from_slice(&buf[..n]);
    let n = w::nack(&mut buf, 1, 2, &[5, 9, 40]).unwrap();
    data.extend_from_slice(&buf[..n]);
    let n = w::remb(&mut buf, 1, 99_999, &[3]).unwrap();
    data.extend_from_slice(&buf[..n]);
    for first in 0..=255u8 {
        let mut d = data.clone();
        d[0] = first;
        for len in 0..=d.len() {
            for p in packets(&d[..len]).flatten() {
                if let Rtcp::Nack(n) = p {
                    let _ = n.lost().count();
                }
            }
        }
    }
}
