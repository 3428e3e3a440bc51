//! A whole session in virtual time, with a Rust DTLS client playing the browser: ICE-lite
//! checks, the DTLS handshake with the fingerprint check, SRTP both ways, and the drops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use dtls::config::{ConfigBuilder, ExtendedMasterSecretType};
use dtls::crypto::Certificate;
use dtls::endpoint::{Endpoint, EndpointEvent};
use dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_crypto::HashAlgorithm;
use webrtc::srtp::{Context, Profile, MAX_TRAILER};
use webrtc::{ice, Event, Identity, Params, Table};

const SERVER: &str = "127.0.0.1:40000";
const BROWSER: &str = "127.0.0.1:50000";
const PWD: &str = "serverpasswordserverpw";

struct Browser {
    dtls: Endpoint,
    cert_fp: Vec<u8>,
    profile: SrtpProtectionProfile,
}

fn browser(profile: SrtpProtectionProfile) -> (Browser, Arc<dtls::config::HandshakeConfig>) {
    let provider = rtc_crypto::default_provider().unwrap();
    let cert =
        Certificate::generate_self_signed(vec!["browser".into()], provider.crypto()).unwrap();
    let cert_fp = provider
        .crypto()
        .hash(HashAlgorithm::Sha256, cert.certificate[0].as_ref())
        .unwrap();
    let cfg = ConfigBuilder::default()
        .with_crypto_provider(provider)
        .with_certificates(vec![cert])
        .with_srtp_protection_profiles(vec![profile])
        .with_insecure_skip_verify(true)
        .with_extended_master_secret(ExtendedMasterSecretType::Require)
        .build(true, Some(SERVER.parse().unwrap()))
        .unwrap();
    let b = Browser {
        dtls: Endpoint::new(
            BROWSER.parse().unwrap(),
            rtc_shared::TransportProtocol::UDP,
            None,
        ),
        cert_fp,
        profile,
    };
    (b, Arc::new(cfg))
}

fn table(fp: Vec<u8>) -> Table<u32> {
    let mut t = Table::new(Identity::generate().unwrap(), SERVER.parse().unwrap());
    t.add(
        Instant::now(),
        Params {
            local_ufrag: "srv".into(),
            local_pwd: PWD.into(),
            remote_ufrag: "brw".into(),
            remote_fingerprint: fp,
            tag: 7,
            slots: Default::default(),
            twcc_id: None,
        },
    )
    .unwrap();
    t
}

fn check(t: &mut Table<u32>, now: Instant, user: (&str, &str), pwd: &str) -> bool {
    let p = rtc_crypto::default_provider().unwrap();
    let req = ice::request(user.0, user.1, pwd, true, p.crypto());
    let mut out = Vec::new();
    t.handle_stun(now, BROWSER.parse().unwrap(), &req, &mut out)
}

/// Runs the handshake to completion in virtual time; returns the browser's SRTP contexts
/// (outbound, inbound).
fn handshake(
    t: &mut Table<u32>,
    b: &mut Browser,
    cfg: Arc<dtls::config::HandshakeConfig>,
    now: Instant,
) -> Option<(Context, Context)> {
    let server: SocketAddr = SERVER.parse().unwrap();
    let from: SocketAddr = BROWSER.parse().unwrap();
    b.dtls.connect(now, server, cfg, None).unwrap();
    let mut done = false;
    for _ in 0..20 {
        let mut to_server = Vec::new();
        while let Some(m) = b.dtls.poll_transmit() {
            to_server.push(m.message.to_vec());
        }
        let mut to_browser = Vec::new();
        for d in to_server {
            t.handle_dtls(now, from, &d, &mut |_, p| to_browser.push(p.to_vec()));
        }
        for d in to_browser {
            if let Ok(evs) = b.dtls.read(now, server, None, BytesMut::from(&d[..])) {
                done |= evs
                    .iter()
                    .any(|e| matches!(e, EndpointEvent::HandshakeComplete));
            }
        }
        if done {
            break;
        }
    }
    if !done {
        return None;
    }
    let profile = match b.profile {
        SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => Profile::AeadAes128Gcm,
        _ => Profile::Aes128CmHmacSha1_80,
    };
    let state = b.dtls.get_connection_state(server).unwrap();
    let km = state
        .export_keying_material("EXTRACTOR-dtls_srtp", &[], profile.keying_len())
        .unwrap();
    let km: &[u8] = km.as_ref();
    let (k, s) = (profile.key_len(), profile.salt_len());
    let out = Context::new(profile, &km[..k], &km[2 * k..2 * k + s]).unwrap();
    let inb = Context::new(profile, &km[k..2 * k], &km[2 * k + s..2 * k + 2 * s]).unwrap();
    Some((out, inb))
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 111];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 3, 0xc0, 0xde, 0xad, 0xbe, 0xef]);
    p.extend_from_slice(b"opus frame bytes");
    p
}

fn media_both_ways(profile: SrtpProtectionProfile) {
    let (mut b, cfg) = browser(profile);
    let mut t = table(b.cert_fp.clone());
    let now = Instant::now();
    assert!(check(&mut t, now, ("srv", "brw"), PWD));
    assert_eq!(
        t.poll_event(),
        Some(Event::Connected {
            tag: 7,
            addr: BROWSER.parse().unwrap()
        })
    );
    let (mut out, mut inb) = handshake(&mut t, &mut b, cfg, now).expect("handshake");
    assert!(matches!(
        t.poll_event(),
        Some(Event::Secured { tag: 7, .. })
    ));

    // Browser -> server: decrypted in place to the same RTP.
    let from: SocketAddr = BROWSER.parse().unwrap();
    let plain = rtp(1);
    let mut buf = [0u8; 1500];
    buf[..plain.len()].copy_from_slice(&plain);
    let n = out.protect_rtp(&mut buf, plain.len()).unwrap();
    let mut wire = buf[..n].to_vec();
    assert_eq!(
        t.unprotect(Instant::now(), &from, &mut wire).unwrap(),
        plain.len()
    );
    assert_eq!(&wire[..plain.len()], &plain[..]);
    // The same packet again is a replay; a flipped tag fails authentication.
    let mut again = buf[..n].to_vec();
    assert!(t.unprotect(Instant::now(), &from, &mut again).is_err());
    let mut forged = rtp(2);
    forged.resize(forged.len() + 16, 0);
    let mut forged2 = [0u8; 1500];
    let fl = forged.len();
    forged2[..fl].copy_from_slice(&forged);
    assert!(t
        .unprotect(Instant::now(), &from, &mut forged2[..fl])
        .is_err());
    assert_eq!((t.counters.srtp_replay, t.counters.srtp_auth), (1, 1));

    // Server -> browser: encrypted in place, the browser decrypts it.
    let plain = rtp(9);
    let mut buf = [0u8; 1500];
    buf[..plain.len()].copy_from_slice(&plain);
    let n = t
        .protect(Instant::now(), &from, &mut buf, plain.len())
        .unwrap();
    assert!(n > plain.len() && n <= plain.len() + MAX_TRAILER);
    let m = inb.unprotect_rtp(&mut buf[..n]).unwrap();
    assert_eq!(&buf[..m], &plain[..]);

    // Nothing goes to an address that never passed a check.
    let stranger: SocketAddr = "127.0.0.1:50001".parse().unwrap();
    assert_eq!(
        t.protect(Instant::now(), &stranger, &mut buf, plain.len()),
        None
    );
}

#[test]
fn gcm_session_carries_media_both_ways() {
    media_both_ways(SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm);
}

#[test]
fn aes_cm_session_carries_media_both_ways() {
    media_both_ways(SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80);
}

#[test]
fn wrong_checks_get_no_answer_and_are_counted() {
    let (b, _) = browser(SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm);
    let mut t = table(b.cert_fp.clone());
    let now = Instant::now();
    assert!(!check(&mut t, now, ("nobody", "brw"), PWD));
    assert!(!check(&mut t, now, ("srv", "other"), PWD));
    assert!(!check(
        &mut t,
        now,
        ("srv", "brw"),
        "wrongpasswordwrongpass"
    ));
    let mut out = Vec::new();
    assert!(!t.handle_stun(now, BROWSER.parse().unwrap(), &[0, 1, 0, 0], &mut out));
    let c = t.counters;
    assert_eq!(
        (c.stun_unknown_user, c.stun_bad_integrity, c.stun_malformed),
        (2, 1, 1)
    );
    assert!(t.poll_event().is_none());
    assert!(!t.is_peer(&BROWSER.parse().unwrap()));
    // DTLS before any check: no session, counted, nothing sent.
    let mut sent = 0;
    t.handle_dtls(
        now,
        BROWSER.parse().unwrap(),
        &[22, 254, 253, 0],
        &mut |_, _| sent += 1,
    );
    assert_eq!((t.counters.dtls_no_session, sent), (1, 0));
}

#[test]
fn a_certificate_that_is_not_the_offered_one_ends_the_session() {
    let (mut b, cfg) = browser(SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm);
    let mut t = table(vec![0xab; 32]);
    let now = Instant::now();
    assert!(check(&mut t, now, ("srv", "brw"), PWD));
    let _ = t.poll_event();
    assert!(handshake(&mut t, &mut b, cfg, now).is_none());
    assert_eq!(t.counters.fingerprint_mismatch, 1);
    assert!(matches!(t.poll_event(), Some(Event::Closed { tag: 7, .. })));
    assert!(t.is_empty());
}

#[test]
fn a_peer_that_stops_checking_stops_receiving() {
    let (mut b, cfg) = browser(SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm);
    let mut t = table(b.cert_fp.clone());
    let t0 = Instant::now();
    assert!(check(&mut t, t0, ("srv", "brw"), PWD));
    handshake(&mut t, &mut b, cfg, t0).unwrap();
    let from: SocketAddr = BROWSER.parse().unwrap();
    let mut buf = [0u8; 1500];
    let plain = rtp(1);
    buf[..plain.len()].copy_from_slice(&plain);
    // Checks every 5 s keep consent.
    for i in 1..=8 {
        let now = t0 + Duration::from_secs(5 * i);
        assert!(check(&mut t, now, ("srv", "brw"), PWD));
        t.handle_timeout(now, &mut |_, _| {});
    }
    assert!(t
        .protect(Instant::now(), &from, &mut buf, plain.len())
        .is_some());
    // Then silence past the consent timeout.
    let later = t0 + Duration::from_secs(40 + 31);
    t.handle_timeout(later, &mut |_, _| {});
    assert_eq!(t.counters.consent_expired, 1);
    buf[..plain.len()].copy_from_slice(&plain);
    assert_eq!(
        t.protect(Instant::now(), &from, &mut buf, plain.len()),
        None
    );
}
