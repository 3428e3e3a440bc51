//! The browser's side of a session, sans-IO, for the tools that play a browser: loadgen's
//! WebRTC participants (`loadgen --webrtc`) and the tests' Rust peer. It writes an offer
//! with one Opus section, makes the nominating ICE check, runs the DTLS handshake as the
//! client (rtc-dtls, AES-GCM) and exports the SRTP keys. The caller moves the datagrams.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use dtls::config::{ConfigBuilder, ExtendedMasterSecretType};
use dtls::crypto::Certificate;
use dtls::endpoint::{Endpoint, EndpointEvent};
use dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_crypto::HashAlgorithm;

use crate::srtp::{Context, Profile};
use crate::Error;

/// A browser's identity: ICE credentials and a self-signed certificate.
pub struct Peer {
    pub ufrag: String,
    pub pwd: String,
    /// SHA-256 of the certificate, as the offer's `a=fingerprint` carries it.
    pub fingerprint: Vec<u8>,
    cert: Certificate,
}

/// The SRTP master keys of both directions, from the DTLS exporter (RFC 5764 §4.2).
#[derive(Clone)]
pub struct Keying {
    pub profile: Profile,
    /// Client (browser) write key and salt: what the browser sends.
    client: (Vec<u8>, Vec<u8>),
    /// Server write key and salt: what the browser receives.
    server: (Vec<u8>, Vec<u8>),
}

/// Keys stay out of logs.
impl std::fmt::Debug for Keying {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keying")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl Keying {
    /// The context that protects what the browser sends.
    pub fn outbound(&self) -> Context {
        Context::new(self.profile, &self.client.0, &self.client.1)
            .expect("exported keys have the profile's lengths")
    }

    /// The context that unprotects what the browser receives.
    pub fn inbound(&self) -> Context {
        Context::new(self.profile, &self.server.0, &self.server.1)
            .expect("exported keys have the profile's lengths")
    }
}

impl Peer {
    /// A peer with ICE user `ufrag` and a fresh certificate.
    pub fn new(ufrag: &str) -> Result<Peer, Error> {
        let provider = rtc_crypto::default_provider().map_err(|e| Error::Dtls(e.to_string()))?;
        let cert = Certificate::generate_self_signed(vec![ufrag.to_owned()], provider.crypto())
            .map_err(|e| Error::Dtls(e.to_string()))?;
        let fingerprint = provider
            .crypto()
            .hash(HashAlgorithm::Sha256, cert.certificate[0].as_ref())
            .map_err(|e| Error::Dtls(e.to_string()))?;
        Ok(Peer {
            ufrag: ufrag.to_owned(),
            pwd: format!("{ufrag}-password-for-ice-checks"),
            fingerprint,
            cert,
        })
    }

    /// The lines of an offer with one Opus audio section sending `ssrc` (no CRLFs).
    pub fn offer(&self, ssrc: u32) -> Vec<String> {
        self.audio_sdp("actpass", "sendrecv", "0", 111, Some(ssrc), None)
    }

    /// An offer that only publishes `ssrc` and takes the DTLS client's part (`setup:active`,
    /// which RFC 8842 allows an offerer): a server that answers `active` to `actpass`
    /// (Janus) then takes the server's part, and this peer stays a DTLS client. `host` is
    /// this peer's one candidate (libnice pairs a peer-reflexive address badly).
    pub fn publish_offer(&self, ssrc: u32, host: SocketAddr) -> Vec<String> {
        self.audio_sdp("active", "sendonly", "0", 111, Some(ssrc), Some(host))
    }

    /// The answer to a server's offer of one Opus section `mid` with payload type `pt`,
    /// receiving only, as the DTLS client, with one host candidate.
    pub fn receive_answer(&self, mid: &str, pt: u8, host: SocketAddr) -> Vec<String> {
        self.audio_sdp("active", "recvonly", mid, pt, None, Some(host))
    }

    fn audio_sdp(
        &self,
        setup: &str,
        direction: &str,
        mid: &str,
        pt: u8,
        ssrc: Option<u32>,
        host: Option<SocketAddr>,
    ) -> Vec<String> {
        let fp = crate::sdp::fingerprint_text(&self.fingerprint);
        let mut lines = vec![
            "v=0".into(),
            "o=- 1 2 IN IP4 127.0.0.1".into(),
            "s=-".into(),
            "t=0 0".into(),
            format!("a=group:BUNDLE {mid}"),
            format!("m=audio 9 UDP/TLS/RTP/SAVPF {pt}"),
            "c=IN IP4 0.0.0.0".into(),
            format!("a=ice-ufrag:{}", self.ufrag),
            format!("a=ice-pwd:{}", self.pwd),
            format!("a=fingerprint:sha-256 {fp}"),
            format!("a=setup:{setup}"),
            format!("a=mid:{mid}"),
            format!("a={direction}"),
            "a=rtcp-mux".into(),
            format!("a=rtpmap:{pt} opus/48000/2"),
            format!("a=fmtp:{pt} minptime=10;useinbandfec=1"),
        ];
        lines.extend(ssrc.map(|s| format!("a=ssrc:{s} cname:{}", self.ufrag)));
        if let Some(h) = host {
            // RFC 8445 §5.1.2.1: type preference 126 (host), local preference 65535.
            lines.push(format!(
                "a=candidate:1 1 udp 2130706431 {} {} typ host",
                h.ip(),
                h.port()
            ));
            lines.push("a=end-of-candidates".into());
        }
        lines
    }

    /// A nominating binding request to a server whose answer had `ufrag` and `pwd`.
    pub fn check_request(&self, ufrag: &str, pwd: &str) -> Result<Vec<u8>, Error> {
        let provider = rtc_crypto::default_provider().map_err(|e| Error::Dtls(e.to_string()))?;
        Ok(crate::ice::request(
            ufrag,
            &self.ufrag,
            pwd,
            true,
            provider.crypto(),
        ))
    }

    /// The success response to a server's binding request to this peer (a full ICE agent
    /// such as Janus's libnice checks the pair too), or `None` for anything else.
    pub fn answer_check(&self, data: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
        let req = crate::ice::parse(data).ok()?;
        if req.local_ufrag != self.ufrag {
            return None;
        }
        let provider = rtc_crypto::default_provider().ok()?;
        req.answer(&self.pwd, from, provider.crypto()).ok()
    }

    /// Starts the DTLS handshake from `local` to `server` (after the ICE check succeeded).
    pub fn handshake(
        &self,
        now: Instant,
        local: SocketAddr,
        server: SocketAddr,
    ) -> Result<Handshake, Error> {
        let provider = rtc_crypto::default_provider().map_err(|e| Error::Dtls(e.to_string()))?;
        let cfg = ConfigBuilder::default()
            .with_crypto_provider(provider)
            .with_certificates(vec![self.cert.clone()])
            .with_srtp_protection_profiles(vec![SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm])
            .with_insecure_skip_verify(true)
            .with_extended_master_secret(ExtendedMasterSecretType::Require)
            .build(true, Some(server))
            .map_err(|e| Error::Dtls(e.to_string()))?;
        let mut dtls = Endpoint::new(local, rtc_shared::TransportProtocol::UDP, None);
        dtls.connect(now, server, Arc::new(cfg), None)
            .map_err(|e| Error::Dtls(e.to_string()))?;
        Ok(Handshake {
            dtls,
            server,
            done: false,
        })
    }
}

/// A DTLS handshake in progress, as the client.
pub struct Handshake {
    dtls: Endpoint,
    server: SocketAddr,
    done: bool,
}

impl Handshake {
    /// The next datagram to send to the server.
    pub fn poll_transmit(&mut self) -> Option<BytesMut> {
        self.dtls.poll_transmit().map(|m| m.message)
    }

    /// A DTLS datagram from the server; true once the handshake is complete.
    pub fn handle(&mut self, now: Instant, data: &[u8]) -> Result<bool, Error> {
        let evs = self
            .dtls
            .read(now, self.server, None, BytesMut::from(data))
            .map_err(|e| Error::Dtls(e.to_string()))?;
        self.done |= evs
            .iter()
            .any(|e| matches!(e, EndpointEvent::HandshakeComplete));
        Ok(self.done)
    }

    /// Retransmits what is due (call when nothing arrived for a while).
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = self.dtls.handle_timeout(self.server, now);
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The SRTP keys, once the handshake is complete.
    pub fn keying(&self) -> Result<Keying, Error> {
        let profile = Profile::AeadAes128Gcm;
        let km = self
            .dtls
            .get_connection_state(self.server)
            .ok_or_else(|| Error::Dtls("no connection".into()))?
            .export_keying_material("EXTRACTOR-dtls_srtp", &[], profile.keying_len())
            .map_err(|e| Error::Dtls(e.to_string()))?;
        let km: &[u8] = km.as_ref();
        let (k, s) = (profile.key_len(), profile.salt_len());
        Ok(Keying {
            profile,
            client: (km[..k].to_vec(), km[2 * k..2 * k + s].to_vec()),
            server: (km[k..2 * k].to_vec(), km[2 * k + s..2 * k + 2 * s].to_vec()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::Offer;

    fn text(lines: &[String]) -> String {
        lines.iter().map(|l| format!("{l}\r\n")).collect()
    }

    #[test]
    fn a_publishing_offer_and_a_receiving_answer_name_their_role_and_candidate() {
        let p = Peer::new("pub1").unwrap();
        let host: SocketAddr = "10.77.0.2:40000".parse().unwrap();
        let offer = text(&p.publish_offer(7, host));
        assert!(offer.contains("a=setup:active\r\n") && offer.contains("a=sendonly\r\n"));
        let o = Offer::parse(&offer).unwrap();
        assert_eq!(o.udp_candidates, [host]);
        assert_eq!(o.voice().and_then(|m| m.ssrc), Some(7));

        let answer = text(&p.receive_answer("a1", 109, host));
        assert!(answer.contains("a=recvonly\r\n") && answer.contains("a=rtpmap:109 opus"));
        let a = Offer::parse(&answer).unwrap();
        assert_eq!(a.audio().map(|m| m.mid.as_str()), Some("a1"));
        assert_eq!(a.audio().and_then(|m| m.ssrc), None);
        // The browser-like offer of the join flow keeps `actpass` and no candidate.
        let plain = text(&p.offer(9));
        assert!(plain.contains("a=setup:actpass\r\n") && !plain.contains("a=candidate"));
    }

    #[test]
    fn a_servers_check_is_answered_only_with_this_peers_credentials() {
        let p = Peer::new("peer1").unwrap();
        let provider = rtc_crypto::default_provider().unwrap();
        let from: SocketAddr = "10.77.0.1:30000".parse().unwrap();
        let good = crate::ice::request(&p.ufrag, "srv", &p.pwd, false, provider.crypto());
        let resp = p
            .answer_check(&good, from)
            .expect("its own check is answered");
        assert!(crate::ice::is_success(&resp));
        let wrong_pwd =
            crate::ice::request(&p.ufrag, "srv", "not-the-pwd", false, provider.crypto());
        assert!(p.answer_check(&wrong_pwd, from).is_none());
        let other = crate::ice::request("other", "srv", &p.pwd, false, provider.crypto());
        assert!(p.answer_check(&other, from).is_none());
        assert!(p.answer_check(&[0x80, 111, 0, 1], from).is_none());
    }
}
