//! The WebRTC sessions of one media worker, sans-IO: datagrams and the time go in, datagrams
//! to send and events come out. A session is created from the signalling (our ICE
//! credentials, the browser's ufrag and certificate fingerprint); the browser's ICE checks
//! then give it its one address (only an address that passed a check with the right
//! credentials is ever sent anything), DTLS runs on that address with the browser's
//! certificate checked against the SDP fingerprint, and the DTLS exporter keys SRTP.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use dtls::config::{
    ClientAuthType, ConfigBuilder, ExtendedMasterSecretType, HandshakeConfig,
    VerifyPeerCertificateFn,
};
use dtls::crypto::Certificate;
use dtls::endpoint::{Endpoint, EndpointEvent};
use dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_crypto::{HashAlgorithm, RTCCryptoProvider};
use rtc_shared::TransportProtocol;

use crate::ice::{self, StunRefused};
use crate::srtp::{self, Profile, Refused};
use crate::Error;

/// RFC 7675 §5.1: without a successful check for this long, consent is lost and nothing
/// more is sent to the peer.
pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);
/// A session whose ICE or DTLS has not completed after this long is closed.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The DTLS exporter label for SRTP keys (RFC 5764 §4.2).
const EXPORTER_LABEL: &str = "EXTRACTOR-dtls_srtp";

/// The server's DTLS certificate and the crypto provider every session shares. Made once
/// per process; its fingerprint goes in every answer.
pub struct Identity {
    cert: Certificate,
    fingerprint: String,
    provider: Arc<dyn RTCCryptoProvider>,
}

impl Identity {
    /// A fresh self-signed ECDSA P-256 certificate.
    pub fn generate() -> Result<Arc<Self>, Error> {
        let provider = rtc_crypto::default_provider().map_err(|e| Error::Dtls(e.to_string()))?;
        let cert = Certificate::generate_self_signed(
            vec!["noc-mediaserver".to_owned()],
            provider.crypto(),
        )
        .map_err(|e| Error::Dtls(e.to_string()))?;
        let digest = provider
            .crypto()
            .hash(HashAlgorithm::Sha256, cert.certificate[0].as_ref())
            .map_err(|e| Error::Dtls(e.to_string()))?;
        Ok(Arc::new(Identity {
            cert,
            fingerprint: crate::sdp::fingerprint_text(&digest),
            provider,
        }))
    }

    /// `AB:CD:...`, the SHA-256 of our certificate, for `a=fingerprint:sha-256`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn provider(&self) -> &Arc<dyn RTCCryptoProvider> {
        &self.provider
    }
}

/// What signalling tells a worker about a new session.
pub struct Params<T> {
    pub local_ufrag: String,
    pub local_pwd: String,
    pub remote_ufrag: String,
    /// SHA-256 of the browser's certificate, from its offer.
    pub remote_fingerprint: Vec<u8>,
    /// The caller's own data (which conference member this is).
    pub tag: T,
    /// The receive slots and payload types the answer gave the browser.
    pub slots: crate::Slots,
    /// The transport-wide sequence number's extension id, when the answer took it: the
    /// session then sends transport-cc feedback on the browser's uplink.
    pub twcc_id: Option<u8>,
}

/// What a session reports to the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<T> {
    /// ICE verified (or moved) the session's address: media may flow to and from it.
    Connected { tag: T, addr: SocketAddr },
    /// DTLS finished and SRTP is keyed.
    Secured { tag: T, profile: &'static str },
    /// The session is gone: a wrong certificate, a failed handshake, lost consent, or no
    /// setup in time.
    Closed { tag: T, why: &'static str },
    /// The member stream with SSRC `source` now plays in receive slot `slot`.
    Slot { tag: T, slot: usize, source: u32 },
    /// The downlink estimate for the browser at `addr` moved (bits/s): the caller hands it
    /// to the mesh as that browser's REMB.
    Estimate { tag: T, addr: SocketAddr, bps: u64 },
}

/// Datagrams dropped, by reason; published on `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub stun_malformed: u64,
    pub stun_unknown_user: u64,
    pub stun_bad_integrity: u64,
    /// DTLS from an address no session's ICE verified.
    pub dtls_no_session: u64,
    /// DTLS records the session's handshake refused.
    pub dtls_refused: u64,
    /// Sessions closed because the certificate did not match the SDP fingerprint.
    pub fingerprint_mismatch: u64,
    pub srtp_auth: u64,
    pub srtp_replay: u64,
    pub srtp_malformed: u64,
    /// SRTP before the DTLS handshake keyed the session.
    pub srtp_unkeyed: u64,
    /// Packets for a peer whose consent expired (or was never keyed), not sent.
    pub tx_refused: u64,
    pub consent_expired: u64,
    /// Packets for a browser whose receive slots of that kind all carry live streams.
    pub tx_no_slot: u64,
    /// Packets in a codec the browser's answer does not have.
    pub tx_no_codec: u64,
    /// Media a browser does not take: it only sends, or it follows other sources.
    pub tx_not_wanted: u64,
    /// Transport-cc feedback packets sent (not a drop: published as a count).
    pub twcc_feedback: u64,
    /// Transport-cc feedback read about what the server sent (the downlink estimate).
    pub downlink_feedback: u64,
}

struct Session<T> {
    p: Params<T>,
    created: Instant,
    /// The ICE-verified address; the only one this session sends to.
    addr: Option<SocketAddr>,
    /// The last successful consent check.
    consent: Instant,
    dtls: Endpoint,
    /// Inbound (browser's keys) and outbound (ours) SRTP, once DTLS is done.
    rx: Option<srtp::Context>,
    tx: Option<srtp::Context>,
    /// Set by the certificate check: a mismatch closes the session.
    mismatch: Arc<std::sync::atomic::AtomicBool>,
    /// Arrivals of the browser's packets, for transport-cc feedback.
    twcc: Box<crate::twcc::Recorder>,
    /// What the server sends the browser, stamped, and the estimate from its feedback;
    /// when it receives media and negotiated transport-cc.
    downlink: Option<Box<crate::downlink::Downlink>>,
}

/// Why an inbound SRTP datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    NotPeer,
    Unkeyed,
    Srtp(Refused),
}

/// The sessions of one worker.
pub struct Table<T> {
    identity: Arc<Identity>,
    local: SocketAddr,
    sessions: HashMap<u64, Session<T>>,
    next: u64,
    by_ufrag: HashMap<String, u64>,
    by_addr: HashMap<SocketAddr, u64>,
    events: VecDeque<Event<T>>,
    pub counters: Counters,
    /// Where transport-cc feedback is written and encrypted.
    feedback: Box<[u8]>,
}

/// The SSRC the server signs its own RTCP with (the reflector's too).
const FEEDBACK_SENDER: u32 = 1;

/// Whether a packet after the RTP/RTCP demux is RTCP (RFC 5761 §4: payload types 192-223).
pub fn is_rtcp(p: &[u8]) -> bool {
    p.len() >= 2 && (192..=223).contains(&p[1])
}

impl<T: Clone> Table<T> {
    pub fn new(identity: Arc<Identity>, local: SocketAddr) -> Self {
        Table {
            identity,
            local,
            sessions: HashMap::new(),
            next: 1,
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            feedback: vec![0; 2 * crate::twcc::WINDOW + 200 + crate::srtp::MAX_TRAILER]
                .into_boxed_slice(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether `addr` is a session's ICE-verified address.
    pub fn is_peer(&self, addr: &SocketAddr) -> bool {
        self.by_addr.contains_key(addr)
    }

    /// Adds a session; a session already using the ufrag is replaced.
    pub fn add(&mut self, now: Instant, p: Params<T>) -> Result<u64, Error> {
        if let Some(old) = self.by_ufrag.get(&p.local_ufrag).copied() {
            self.remove(old);
        }
        let mismatch = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let config = self.dtls_config(p.remote_fingerprint.clone(), mismatch.clone())?;
        let id = self.next;
        self.next += 1;
        self.by_ufrag.insert(p.local_ufrag.clone(), id);
        // The downlink is stamped where the browser receives media and negotiated
        // transport-cc (one extension id across the bundle).
        let downlink = (p.twcc_id.is_some() && !p.slots.is_empty())
            .then(|| Box::new(crate::downlink::Downlink::new(now)));
        self.sessions.insert(
            id,
            Session {
                p,
                created: now,
                addr: None,
                consent: now,
                dtls: Endpoint::new(self.local, TransportProtocol::UDP, Some(config)),
                rx: None,
                tx: None,
                mismatch,
                twcc: Box::default(),
                downlink,
            },
        );
        Ok(id)
    }

    /// The session with our ufrag `ufrag` plays only `sources` on its slots of `kind` (see
    /// [`crate::Slots::follow`]); false when there is no such session.
    pub fn follow(&mut self, ufrag: &str, kind: crate::SlotKind, sources: &[u32]) -> bool {
        let Some(s) = self
            .by_ufrag
            .get(ufrag)
            .and_then(|id| self.sessions.get_mut(id))
        else {
            return false;
        };
        s.p.slots.follow(kind, sources);
        true
    }

    /// Removes the session with our ufrag `ufrag`; returns its tag.
    pub fn remove_ufrag(&mut self, ufrag: &str) -> Option<T> {
        let id = self.by_ufrag.get(ufrag).copied()?;
        self.remove(id)
    }

    fn remove(&mut self, id: u64) -> Option<T> {
        let s = self.sessions.remove(&id)?;
        self.by_ufrag.remove(&s.p.local_ufrag);
        if let Some(a) = s.addr {
            self.by_addr.remove(&a);
        }
        Some(s.p.tag)
    }

    fn close(&mut self, id: u64, why: &'static str) {
        if let Some(tag) = self.remove(id) {
            self.events.push_back(Event::Closed { tag, why });
        }
    }

    fn dtls_config(
        &self,
        remote_fp: Vec<u8>,
        mismatch: Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<Arc<HandshakeConfig>, Error> {
        let provider = self.identity.provider.clone();
        let hasher = provider.clone();
        // The browser's certificate is self-signed: the SDP fingerprint is what
        // authenticates it (RFC 8827 §6.5), so that is the whole check.
        let verify: VerifyPeerCertificateFn = Arc::new(move |certs, _| {
            let ok = certs.first().is_some_and(|c| {
                hasher
                    .crypto()
                    .hash(HashAlgorithm::Sha256, c)
                    .is_ok_and(|d| rtc_crypto::constant_time_eq(&d, &remote_fp))
            });
            if ok {
                Ok(())
            } else {
                mismatch.store(true, std::sync::atomic::Ordering::Relaxed);
                Err(rtc_shared::error::Error::ErrNoMatchingCertificateFingerprint)
            }
        });
        let cfg = ConfigBuilder::default()
            .with_crypto_provider(provider)
            .with_certificates(vec![self.identity.cert.clone()])
            .with_srtp_protection_profiles(vec![
                SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
                SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            ])
            .with_client_auth(ClientAuthType::RequireAnyClientCert)
            .with_insecure_skip_verify(true)
            .with_verify_peer_certificate(Some(verify))
            .with_extended_master_secret(ExtendedMasterSecretType::Require)
            .build(false, None)
            .map_err(|e| Error::Dtls(e.to_string()))?;
        Ok(Arc::new(cfg))
    }

    /// A STUN datagram (first byte 0-3). A binding request naming a session, with the
    /// right integrity, is answered into `out` (returns true) and verifies `from`;
    /// anything else is counted and dropped.
    pub fn handle_stun(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> bool {
        let req = match ice::parse(data) {
            Ok(r) => r,
            Err(e) => {
                self.count_stun(e);
                return false;
            }
        };
        let Some(&id) = self.by_ufrag.get(&req.local_ufrag) else {
            self.counters.stun_unknown_user += 1;
            return false;
        };
        let s = self.sessions.get_mut(&id).expect("indexed");
        if s.p.remote_ufrag != req.remote_ufrag {
            self.counters.stun_unknown_user += 1;
            return false;
        }
        let nominate = req.nominate;
        let resp = match req.answer(&s.p.local_pwd, from, self.identity.provider.crypto()) {
            Ok(r) => r,
            Err(e) => {
                self.count_stun(e);
                return false;
            }
        };
        s.consent = now;
        // ICE-lite: the controlling browser picks the pair; before it nominates, the first
        // verified address is used so media can start early.
        if s.addr != Some(from) && (s.addr.is_none() || nominate) {
            if let Some(old) = s.addr.replace(from) {
                self.by_addr.remove(&old);
            }
            let tag = s.p.tag.clone();
            if let Some(other) = self.by_addr.insert(from, id).filter(|o| *o != id) {
                // Another session verified the same address before: the newer one wins.
                if let Some(o) = self.sessions.get_mut(&other) {
                    o.addr = None;
                }
            }
            self.events.push_back(Event::Connected { tag, addr: from });
        }
        out.clear();
        out.extend_from_slice(&resp);
        true
    }

    fn count_stun(&mut self, e: StunRefused) {
        match e {
            StunRefused::Malformed => self.counters.stun_malformed += 1,
            StunRefused::UnknownUser => self.counters.stun_unknown_user += 1,
            StunRefused::BadIntegrity => self.counters.stun_bad_integrity += 1,
        }
    }

    /// A DTLS datagram (first byte 20-63), accepted only from a verified address; what the
    /// handshake answers goes to `send`.
    pub fn handle_dtls(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
        send: &mut dyn FnMut(SocketAddr, &[u8]),
    ) {
        let Some(&id) = self.by_addr.get(&from) else {
            self.counters.dtls_no_session += 1;
            return;
        };
        let s = self.sessions.get_mut(&id).expect("indexed");
        let result = s.dtls.read(now, from, None, BytesMut::from(data));
        while let Some(t) = s.dtls.poll_transmit() {
            send(t.transport.peer_addr, &t.message);
        }
        let events = match result {
            Ok(ev) => ev,
            Err(e) => {
                if s.mismatch.load(std::sync::atomic::Ordering::Relaxed) {
                    self.counters.fingerprint_mismatch += 1;
                    self.close(id, "certificate does not match the SDP fingerprint");
                } else {
                    // The peer's business: counted, not logged per packet.
                    let _ = e;
                    self.counters.dtls_refused += 1;
                }
                return;
            }
        };
        for ev in events {
            match ev {
                EndpointEvent::HandshakeComplete => match keys(s) {
                    Ok(profile) => self.events.push_back(Event::Secured {
                        tag: s.p.tag.clone(),
                        profile: profile.name(),
                    }),
                    Err(_) => {
                        self.close(id, "no SRTP profile in common");
                        return;
                    }
                },
                EndpointEvent::PeerClosed => {
                    self.close(id, "the peer closed DTLS");
                    return;
                }
                _ => {}
            }
        }
    }

    /// Decrypts an SRTP or SRTCP datagram from a verified address in place; returns the
    /// plaintext length.
    pub fn unprotect(
        &mut self,
        now: Instant,
        from: &SocketAddr,
        buf: &mut [u8],
    ) -> Result<usize, Dropped> {
        let Some(&id) = self.by_addr.get(from) else {
            return Err(Dropped::NotPeer);
        };
        let s = self.sessions.get_mut(&id).expect("indexed");
        let Some(rx) = s.rx.as_mut() else {
            self.counters.srtp_unkeyed += 1;
            return Err(Dropped::Unkeyed);
        };
        let r = if is_rtcp(buf) {
            rx.unprotect_rtcp(buf)
        } else {
            rx.unprotect_rtp(buf)
        };
        if let Ok(n) = r {
            let pkt = &mut buf[..n];
            if let (Some(id), false) = (s.p.twcc_id, is_rtcp(pkt)) {
                if let Some(seq) = crate::twcc::sequence(pkt, id) {
                    let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
                    s.twcc.on_packet(now, seq, ssrc);
                }
            }
            s.p.slots.inbound(pkt);
            if let (Some(dl), true, Some(addr)) = (s.downlink.as_mut(), is_rtcp(pkt), s.addr) {
                let mut estimate = None;
                let mut feedback = 0;
                crate::slots::for_each_packet(pkt, |p| {
                    // RTPFB, FMT 15: transport-cc feedback about what we sent.
                    if p[1] == 205 && p[0] & 0x1f == 15 {
                        feedback += 1;
                        estimate = dl.on_feedback(now, p).or(estimate);
                    }
                });
                self.counters.downlink_feedback += feedback;
                if let Some(bps) = estimate {
                    self.events.push_back(Event::Estimate {
                        tag: s.p.tag.clone(),
                        addr,
                        bps,
                    });
                }
            }
        }
        r.map_err(|e| {
            match e {
                Refused::Auth => self.counters.srtp_auth += 1,
                Refused::Replay => self.counters.srtp_replay += 1,
                Refused::Malformed | Refused::NoRoom => self.counters.srtp_malformed += 1,
            }
            Dropped::Srtp(e)
        })
    }

    /// Encrypts the `len`-byte RTP or RTCP packet in `buf` for `dest` in place, in the
    /// browser's receive slot and payload type; `buf` must have [`srtp::MAX_TRAILER`] bytes
    /// to spare. None: `dest` is no peer with consent and keys, or the browser has no slot
    /// or codec for the packet, and nothing may be sent to it.
    pub fn protect(
        &mut self,
        now: Instant,
        dest: &SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) -> Option<usize> {
        let id = *self.by_addr.get(dest)?;
        let s = self.sessions.get_mut(&id).expect("indexed");
        let Some(tx) = s.tx.as_mut() else {
            self.counters.tx_refused += 1;
            return None;
        };
        match s.p.slots.outbound(now, &mut buf[..len]) {
            Ok(None) => {}
            Ok(Some(slot)) => {
                let source =
                    s.p.slots
                        .source(slot)
                        .expect("a slot just taken has a source");
                self.events.push_back(Event::Slot {
                    tag: s.p.tag.clone(),
                    slot,
                    source,
                });
            }
            Err(crate::SlotDrop::NoSlot) => {
                self.counters.tx_no_slot += 1;
                return None;
            }
            Err(crate::SlotDrop::NotWanted) => {
                self.counters.tx_not_wanted += 1;
                return None;
            }
            Err(crate::SlotDrop::NoCodec | crate::SlotDrop::Malformed) => {
                self.counters.tx_no_codec += 1;
                return None;
            }
        }
        let r = if is_rtcp(&buf[..len]) {
            tx.protect_rtcp(buf, len)
        } else {
            let len = match (s.downlink.as_mut(), s.p.twcc_id) {
                (Some(dl), Some(id)) => dl.stamp(now, buf, len, id, srtp::MAX_TRAILER),
                _ => len,
            };
            tx.protect_rtp(buf, len)
        };
        r.ok()
    }

    /// Drives DTLS retransmissions, consent freshness and setup timeouts.
    pub fn handle_timeout(&mut self, now: Instant, send: &mut dyn FnMut(SocketAddr, &[u8])) {
        let mut dead: Vec<(u64, &'static str)> = Vec::new();
        for (&id, s) in self.sessions.iter_mut() {
            if let Some(a) = s.addr {
                if s.dtls.poll_timeout(&a).is_some_and(|t| t <= now) {
                    let _ = s.dtls.handle_timeout(a, now);
                }
                while let Some(t) = s.dtls.poll_transmit() {
                    send(t.transport.peer_addr, &t.message);
                }
                if now.saturating_duration_since(s.consent) > CONSENT_TIMEOUT {
                    dead.push((id, "consent expired (RFC 7675)"));
                    continue;
                }
                // Transport-cc feedback on the browser's uplink, encrypted as SRTCP.
                if let (Some(tx), true) = (s.tx.as_mut(), s.twcc.due(now)) {
                    let fb = &mut self.feedback[..];
                    if let Some(n) = s.twcc.write(now, FEEDBACK_SENDER, fb) {
                        if let Ok(m) = tx.protect_rtcp(fb, n) {
                            send(a, &fb[..m]);
                            self.counters.twcc_feedback += 1;
                        }
                    }
                }
            }
            if s.tx.is_none() && now.saturating_duration_since(s.created) > SETUP_TIMEOUT {
                dead.push((id, "ICE and DTLS did not complete in time"));
            }
        }
        for (id, why) in dead {
            if why.starts_with("consent") {
                self.counters.consent_expired += 1;
            }
            self.close(id, why);
        }
    }

    pub fn poll_event(&mut self) -> Option<Event<T>> {
        self.events.pop_front()
    }
}

/// Keys SRTP from the finished handshake: we are the DTLS server, so the client's half of
/// the exporter output is the browser's (RFC 5764 §4.2).
fn keys<T>(s: &mut Session<T>) -> Result<Profile, Error> {
    let addr = s.addr.ok_or_else(|| Error::Dtls("no address".into()))?;
    let state = s
        .dtls
        .get_connection_state(addr)
        .ok_or_else(|| Error::Dtls("no connection".into()))?;
    let profile = match state.srtp_protection_profile() {
        SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => Profile::AeadAes128Gcm,
        SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => Profile::Aes128CmHmacSha1_80,
        _ => return Err(Error::Dtls("unsupported SRTP profile".into())),
    };
    let km = state
        .export_keying_material(EXPORTER_LABEL, &[], profile.keying_len())
        .map_err(|e| Error::Dtls(e.to_string()))?;
    let km: &[u8] = km.as_ref();
    let (k, sl) = (profile.key_len(), profile.salt_len());
    let client_key = &km[..k];
    let server_key = &km[k..2 * k];
    let client_salt = &km[2 * k..2 * k + sl];
    let server_salt = &km[2 * k + sl..2 * k + 2 * sl];
    s.rx = Some(srtp::Context::new(profile, client_key, client_salt)?);
    s.tx = Some(srtp::Context::new(profile, server_key, server_salt)?);
    Ok(profile)
}
