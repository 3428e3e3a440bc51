//! A Rust WebRTC peer that plays a browser over a real UDP socket, for tests that need a
//! keyed session without Chromium: its offer, the ICE check, the DTLS handshake as client
//! (webrtc-rs's sans-IO `rtc-dtls`) and the SRTP contexts from the keying material.

use bytes::BytesMut;
use dtls::config::{ConfigBuilder, ExtendedMasterSecretType};
use dtls::crypto::Certificate;
use dtls::endpoint::{Endpoint, EndpointEvent};
use dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_crypto::HashAlgorithm;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};
use webrtc::ice;
use webrtc::srtp::{Context, Profile};

/// One browser: a UDP socket, ICE credentials and a self-signed certificate.
pub struct Browser {
    pub socket: UdpSocket,
    pub ufrag: String,
    pub pwd: String,
    /// SHA-256 of the certificate, as the offer's `a=fingerprint` carries it.
    pub fingerprint: Vec<u8>,
    cert: Certificate,
}

/// The browser's SRTP contexts once DTLS is done.
pub struct Keys {
    /// Browser -> server.
    pub outbound: Context,
    /// Server -> browser.
    pub inbound: Context,
}

impl Browser {
    /// A browser on a fresh 127.0.0.1 socket (200 ms read timeout) with ICE user `ufrag`.
    pub fn new(ufrag: &str) -> Browser {
        let provider = rtc_crypto::default_provider().expect("crypto provider");
        let cert = Certificate::generate_self_signed(vec![ufrag.to_owned()], provider.crypto())
            .expect("a self-signed certificate");
        let fingerprint = provider
            .crypto()
            .hash(HashAlgorithm::Sha256, cert.certificate[0].as_ref())
            .expect("sha-256");
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        Browser {
            socket,
            ufrag: ufrag.to_owned(),
            pwd: format!("{ufrag}-password-for-ice-checks"),
            fingerprint,
            cert,
        }
    }

    /// The lines of an offer with one Opus audio section sending `ssrc` (no CRLFs).
    pub fn offer(&self, ssrc: u32) -> Vec<String> {
        let fp = webrtc::sdp::fingerprint_text(&self.fingerprint);
        vec![
            "v=0".into(),
            "o=- 1 2 IN IP4 127.0.0.1".into(),
            "s=-".into(),
            "t=0 0".into(),
            "a=group:BUNDLE 0".into(),
            "m=audio 9 UDP/TLS/RTP/SAVPF 111".into(),
            "c=IN IP4 0.0.0.0".into(),
            format!("a=ice-ufrag:{}", self.ufrag),
            format!("a=ice-pwd:{}", self.pwd),
            format!("a=fingerprint:sha-256 {fp}"),
            "a=setup:actpass".into(),
            "a=mid:0".into(),
            "a=sendrecv".into(),
            "a=rtcp-mux".into(),
            "a=rtpmap:111 opus/48000/2".into(),
            "a=fmtp:111 minptime=10;useinbandfec=1".into(),
            format!("a=ssrc:{ssrc} cname:{}", self.ufrag),
        ]
    }

    /// A nominating binding request to a server whose answer had `ufrag` and `pwd`.
    pub fn check_request(&self, ufrag: &str, pwd: &str) -> Vec<u8> {
        let provider = rtc_crypto::default_provider().expect("crypto provider");
        ice::request(ufrag, &self.ufrag, pwd, true, provider.crypto())
    }

    /// Connects to `server`: the ICE check (answered with a binding success), then the
    /// DTLS handshake with AES-GCM. `pump` runs between steps, for a server that the test
    /// thread itself turns; a server in another process needs none.
    pub fn connect(
        &self,
        server: SocketAddr,
        ufrag: &str,
        pwd: &str,
        mut pump: impl FnMut(),
    ) -> Keys {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 2048];
        self.socket
            .send_to(&self.check_request(ufrag, pwd), server)
            .expect("send check");
        loop {
            assert!(Instant::now() < deadline, "no binding success");
            pump();
            if let Ok((n, _)) = self.socket.recv_from(&mut buf) {
                if n >= 20 && buf[..2] == [1, 1] {
                    break;
                }
            }
        }
        let provider = rtc_crypto::default_provider().expect("crypto provider");
        let profile = Profile::AeadAes128Gcm;
        let cfg = ConfigBuilder::default()
            .with_crypto_provider(provider)
            .with_certificates(vec![self.cert.clone()])
            .with_srtp_protection_profiles(vec![SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm])
            .with_insecure_skip_verify(true)
            .with_extended_master_secret(ExtendedMasterSecretType::Require)
            .build(true, Some(server))
            .expect("dtls config");
        let local = self.socket.local_addr().expect("local address");
        let mut dtls = Endpoint::new(local, rtc_shared::TransportProtocol::UDP, None);
        dtls.connect(Instant::now(), server, Arc::new(cfg), None)
            .expect("dtls connect");
        let mut done = false;
        while !done {
            assert!(Instant::now() < deadline, "DTLS handshake did not finish");
            while let Some(m) = dtls.poll_transmit() {
                self.socket.send_to(&m.message, server).expect("send dtls");
            }
            pump();
            match self.socket.recv_from(&mut buf) {
                // RFC 7983: DTLS records start with 20-63.
                Ok((n, _)) if (20..=63).contains(&buf[0]) => {
                    let evs = dtls
                        .read(Instant::now(), server, None, BytesMut::from(&buf[..n]))
                        .expect("dtls read");
                    done = evs
                        .iter()
                        .any(|e| matches!(e, EndpointEvent::HandshakeComplete));
                }
                Ok(_) => {}
                Err(_) => {
                    let _ = dtls.handle_timeout(server, Instant::now());
                }
            }
        }
        let km = dtls
            .get_connection_state(server)
            .expect("connection state")
            .export_keying_material("EXTRACTOR-dtls_srtp", &[], profile.keying_len())
            .expect("keying material");
        let km: &[u8] = km.as_ref();
        let (k, s) = (profile.key_len(), profile.salt_len());
        Keys {
            outbound: Context::new(profile, &km[..k], &km[2 * k..2 * k + s]).expect("srtp"),
            inbound: Context::new(profile, &km[k..2 * k], &km[2 * k + s..2 * k + 2 * s])
                .expect("srtp"),
        }
    }
}
