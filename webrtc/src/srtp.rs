//! SRTP and SRTCP protection in place, without allocating per packet.
//!
//! Why not rtc-srtp's `Context`: its `encrypt_rtp`/`decrypt_rtp` return a fresh `BytesMut`
//! per packet (and its SSRC states live in a `HashMap` that grows on first sight), which
//! breaks the forwarding path's "no heap allocation per packet" rule. The ciphers here work
//! on the caller's buffer: AES-128-GCM per RFC 7714 (ring's in-place AEAD) and
//! AES_CM_128_HMAC_SHA1_80 per RFC 3711 (AES-CTR from `aes`/`ctr`, HMAC-SHA1 from ring). The
//! key derivation (RFC 3711 §4.3, also used by RFC 7714) and the replay window are small and
//! written here for the same reason (rtc-srtp keeps them crate-private). The tests check
//! every direction against rtc-srtp, an independent implementation.

use aes::cipher::{BlockEncrypt, InnerIvInit, KeyInit, StreamCipher};
use aes::Aes128;
use ring::aead::{self, LessSafeKey, Nonce, UnboundKey};
use ring::hmac;

use crate::Error;

/// Bytes a protected packet may grow by: the largest trailer (SRTCP with AES-CM: index 4 and
/// tag 10; SRTCP with GCM: tag 16 and index 4).
pub const MAX_TRAILER: usize = 20;

/// RTP header length without CSRCs and extension.
const RTP_FIXED: usize = 12;
/// SRTCP's E flag on the index word.
const E_FLAG: u32 = 0x8000_0000;
/// Distinct SSRCs whose rollover and replay state one direction keeps; the oldest is
/// forgotten past it (a browser has a handful of streams, a receiver one per slot).
const MAX_SSRCS: usize = 64;
/// Replay window in packets (RFC 3711 §3.3.2 requires at least 64).
const REPLAY_WINDOW: u64 = 128;

/// The two protection profiles offered in DTLS `use_srtp`, most preferred first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// SRTP_AEAD_AES_128_GCM (RFC 7714): 16-byte key, 12-byte salt, 16-byte tag.
    AeadAes128Gcm,
    /// SRTP_AES128_CM_HMAC_SHA1_80 (RFC 3711): 16-byte key, 14-byte salt, 10-byte tag.
    Aes128CmHmacSha1_80,
}

impl Profile {
    pub fn key_len(self) -> usize {
        16
    }

    pub fn salt_len(self) -> usize {
        match self {
            Profile::AeadAes128Gcm => 12,
            Profile::Aes128CmHmacSha1_80 => 14,
        }
    }

    /// Keying material one side's master key and salt take from the DTLS exporter.
    pub fn keying_len(self) -> usize {
        2 * (self.key_len() + self.salt_len())
    }

    /// Bytes SRTP adds to an RTP packet.
    pub fn rtp_overhead(self) -> usize {
        match self {
            Profile::AeadAes128Gcm => 16,
            Profile::Aes128CmHmacSha1_80 => 10,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Profile::AeadAes128Gcm => "SRTP_AEAD_AES_128_GCM",
            Profile::Aes128CmHmacSha1_80 => "SRTP_AES128_CM_HMAC_SHA1_80",
        }
    }
}

/// Why an SRTP or SRTCP packet was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Too short, or a header that does not parse.
    Malformed,
    /// The authentication tag did not verify.
    Auth,
    /// Seen already, or older than the replay window.
    Replay,
    /// No room in the buffer for the trailer.
    NoRoom,
}

/// RFC 3711 §4.3.1 key derivation with the AES-CM PRF and a key derivation rate of 0:
/// `out` is filled with the keystream for `label` under the master key and salt.
fn derive(master_key: &Aes128, master_salt: &[u8], label: u8, out: &mut [u8]) {
    let mut x = [0u8; 16];
    x[..master_salt.len()].copy_from_slice(master_salt);
    x[7] ^= label;
    for (i, chunk) in out.chunks_mut(16).enumerate() {
        let mut block = x;
        block[14..16].copy_from_slice(&(i as u16).to_be_bytes());
        let b = aes::Block::from_mut_slice(&mut block);
        master_key.encrypt_block(b);
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
}

/// Session keys for one direction (RTP and RTCP).
enum Keys {
    Gcm {
        rtp: LessSafeKey,
        rtp_salt: [u8; 12],
        rtcp: LessSafeKey,
        rtcp_salt: [u8; 12],
    },
    Cm {
        rtp: Aes128,
        rtp_auth: hmac::Key,
        rtp_salt: [u8; 14],
        rtcp: Aes128,
        rtcp_auth: hmac::Key,
        rtcp_salt: [u8; 14],
    },
}

impl Keys {
    fn new(profile: Profile, key: &[u8], salt: &[u8]) -> Result<Self, Error> {
        if key.len() != profile.key_len() || salt.len() != profile.salt_len() {
            return Err(Error::Srtp("master key or salt of the wrong length"));
        }
        let master = Aes128::new_from_slice(key).map_err(|_| Error::Srtp("bad master key"))?;
        let gcm = |label: u8| -> Result<LessSafeKey, Error> {
            let mut k = [0u8; 16];
            derive(&master, salt, label, &mut k);
            UnboundKey::new(&aead::AES_128_GCM, &k)
                .map(LessSafeKey::new)
                .map_err(|_| Error::Srtp("AES-GCM key"))
        };
        Ok(match profile {
            Profile::AeadAes128Gcm => {
                let mut rtp_salt = [0u8; 12];
                let mut rtcp_salt = [0u8; 12];
                derive(&master, salt, 0x02, &mut rtp_salt);
                derive(&master, salt, 0x05, &mut rtcp_salt);
                Keys::Gcm {
                    rtp: gcm(0x00)?,
                    rtp_salt,
                    rtcp: gcm(0x03)?,
                    rtcp_salt,
                }
            }
            Profile::Aes128CmHmacSha1_80 => {
                let cm = |label: u8| {
                    let mut k = [0u8; 16];
                    derive(&master, salt, label, &mut k);
                    Aes128::new(&k.into())
                };
                let auth = |label: u8| {
                    let mut k = [0u8; 20];
                    derive(&master, salt, label, &mut k);
                    hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &k)
                };
                let mut rtp_salt = [0u8; 14];
                let mut rtcp_salt = [0u8; 14];
                derive(&master, salt, 0x02, &mut rtp_salt);
                derive(&master, salt, 0x05, &mut rtcp_salt);
                Keys::Cm {
                    rtp: cm(0x00),
                    rtp_auth: auth(0x01),
                    rtp_salt,
                    rtcp: cm(0x03),
                    rtcp_auth: auth(0x04),
                    rtcp_salt,
                }
            }
        })
    }
}

/// AES-CM's counter block: salt XOR SSRC XOR packet index, shifted by 16 bits.
fn cm_iv(salt: &[u8; 14], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(salt);
    for (i, b) in ssrc.to_be_bytes().iter().enumerate() {
        iv[4 + i] ^= b;
    }
    for (i, b) in index.to_be_bytes()[2..].iter().enumerate() {
        iv[8 + i] ^= b;
    }
    iv
}

fn cm_apply(key: &Aes128, iv: [u8; 16], data: &mut [u8]) {
    // The expanded key is copied (176 bytes on the stack), not re-expanded per packet.
    let core =
        ctr::CtrCore::<Aes128, ctr::flavors::Ctr128BE>::inner_iv_init(key.clone(), &iv.into());
    let mut c = ctr::Ctr128BE::<Aes128>::from_core(core);
    c.apply_keystream(data);
}

/// GCM's 12-byte nonce: 0x0000 || SSRC || ROC || SEQ (or 0x0000 || index), XOR salt.
fn gcm_nonce(salt: &[u8; 12], ssrc: u32, index: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[2..6].copy_from_slice(&ssrc.to_be_bytes());
    n[6..12].copy_from_slice(&index.to_be_bytes()[2..]);
    for (a, b) in n.iter_mut().zip(salt) {
        *a ^= b;
    }
    Nonce::assume_unique_for_key(n)
}

/// The RTP header's length (fixed part, CSRCs, extension), if `p` holds one.
pub fn rtp_header_len(p: &[u8]) -> Option<usize> {
    if p.len() < RTP_FIXED || p[0] >> 6 != 2 {
        return None;
    }
    let mut n = RTP_FIXED + 4 * usize::from(p[0] & 0x0f);
    if p[0] & 0x10 != 0 {
        if p.len() < n + 4 {
            return None;
        }
        let words = usize::from(u16::from_be_bytes([p[n + 2], p[n + 3]]));
        n += 4 + 4 * words;
    }
    (p.len() >= n).then_some(n)
}

/// Sliding window over 64-bit packet indexes (RFC 3711 §3.3.2).
#[derive(Clone, Copy, Debug, Default)]
struct Window {
    started: bool,
    top: u64,
    /// Bit i: index `top - i` was accepted.
    seen: u128,
}

impl Window {
    fn check(&self, index: u64) -> bool {
        if !self.started || index > self.top {
            return true;
        }
        let back = self.top - index;
        back < REPLAY_WINDOW && self.seen & (1u128 << back) == 0
    }

    fn accept(&mut self, index: u64) {
        if !self.started {
            *self = Window {
                started: true,
                top: index,
                seen: 1,
            };
        } else if index > self.top {
            let shift = index - self.top;
            self.seen = if shift >= 128 { 0 } else { self.seen << shift } | 1;
            self.top = index;
        } else {
            self.seen |= 1u128 << (self.top - index);
        }
    }
}

/// What one direction remembers per SSRC: rollover state (RTP) or the SRTCP index, and the
/// replay windows.
#[derive(Clone, Copy, Debug, Default)]
struct SsrcState {
    ssrc: u32,
    /// RTP: highest extended index sent or accepted (`roc << 16 | seq`).
    rtp_started: bool,
    rtp_index: u64,
    rtp_window: Window,
    /// SRTCP: next index to send, or the window of received ones.
    rtcp_next: u32,
    rtcp_window: Window,
    /// Last use, for forgetting the oldest when full.
    used: u64,
}

/// A fixed table of SSRC states, allocated once.
struct States {
    v: Vec<SsrcState>,
    clock: u64,
}

impl States {
    fn new() -> Self {
        Self {
            v: Vec::with_capacity(MAX_SSRCS),
            clock: 0,
        }
    }

    fn get(&mut self, ssrc: u32) -> &mut SsrcState {
        self.clock += 1;
        let clock = self.clock;
        let i = match self.v.iter().position(|s| s.ssrc == ssrc) {
            Some(i) => i,
            None if self.v.len() < MAX_SSRCS => {
                self.v.push(SsrcState {
                    ssrc,
                    ..Default::default()
                });
                self.v.len() - 1
            }
            None => {
                let (i, _) = self
                    .v
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, s)| s.used)
                    .expect("full table is not empty");
                self.v[i] = SsrcState {
                    ssrc,
                    ..Default::default()
                };
                i
            }
        };
        let s = &mut self.v[i];
        s.used = clock;
        s
    }
}

/// Extended index estimate for a received sequence number (RFC 3711 Appendix A).
fn guess_index(s: &SsrcState, seq: u16) -> u64 {
    if !s.rtp_started {
        return u64::from(seq);
    }
    let roc = s.rtp_index >> 16;
    let s_l = (s.rtp_index & 0xffff) as u16;
    let v = if s_l < 0x8000 {
        if seq > s_l && seq - s_l > 0x8000 {
            roc.wrapping_sub(1)
        } else {
            roc
        }
    } else if s_l - 0x8000 > seq {
        roc + 1
    } else {
        roc
    };
    (v << 16) | u64::from(seq)
}

/// One direction of an SRTP session: protects what we send, or unprotects what we receive.
pub struct Context {
    profile: Profile,
    keys: Keys,
    states: States,
}

impl Context {
    /// A context from the master key and salt this direction takes from the DTLS exporter.
    pub fn new(profile: Profile, master_key: &[u8], master_salt: &[u8]) -> Result<Self, Error> {
        Ok(Self {
            profile,
            keys: Keys::new(profile, master_key, master_salt)?,
            states: States::new(),
        })
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Protects the RTP packet in `buf[..len]` in place; `buf` must have room for the tag.
    /// Returns the protected length.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Refused> {
        let hl = rtp_header_len(&buf[..len]).ok_or(Refused::Malformed)?;
        let out = len + self.profile.rtp_overhead();
        if buf.len() < out {
            return Err(Refused::NoRoom);
        }
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let st = self.states.get(ssrc);
        // The sender's own rollover: the sequence wrapped when it went down by more than half.
        let index = if !st.rtp_started {
            u64::from(seq)
        } else {
            let last = st.rtp_index;
            let mut roc = last >> 16;
            let last_seq = (last & 0xffff) as u16;
            if seq < last_seq && last_seq - seq > 0x8000 {
                roc += 1;
            } else if seq > last_seq && seq - last_seq > 0x8000 && roc > 0 {
                roc -= 1;
            }
            (roc << 16) | u64::from(seq)
        };
        if !st.rtp_started || index > st.rtp_index {
            st.rtp_started = true;
            st.rtp_index = index;
        }
        match &self.keys {
            Keys::Gcm { rtp, rtp_salt, .. } => {
                let (head, rest) = buf.split_at_mut(hl);
                let (payload, tail) = rest.split_at_mut(len - hl);
                let tag = rtp
                    .seal_in_place_separate_tag(
                        gcm_nonce(rtp_salt, ssrc, index),
                        aead::Aad::from(&*head),
                        payload,
                    )
                    .map_err(|_| Refused::Malformed)?;
                tail[..16].copy_from_slice(tag.as_ref());
            }
            Keys::Cm {
                rtp,
                rtp_auth,
                rtp_salt,
                ..
            } => {
                cm_apply(rtp, cm_iv(rtp_salt, ssrc, index), &mut buf[hl..len]);
                let roc = ((index >> 16) as u32).to_be_bytes();
                let mut ctx = hmac::Context::with_key(rtp_auth);
                ctx.update(&buf[..len]);
                ctx.update(&roc);
                let tag = ctx.sign();
                buf[len..len + 10].copy_from_slice(&tag.as_ref()[..10]);
            }
        }
        Ok(out)
    }

    /// Unprotects the SRTP packet `buf` in place (authentication and replay checked) and
    /// returns the plain RTP length.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<usize, Refused> {
        let over = self.profile.rtp_overhead();
        let hl = rtp_header_len(buf).ok_or(Refused::Malformed)?;
        if buf.len() < hl + over {
            return Err(Refused::Malformed);
        }
        let len = buf.len() - over;
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let st = self.states.get(ssrc);
        let index = guess_index(st, seq);
        if !st.rtp_window.check(index) {
            return Err(Refused::Replay);
        }
        match &self.keys {
            Keys::Gcm { rtp, rtp_salt, .. } => {
                let (head, rest) = buf.split_at_mut(hl);
                rtp.open_in_place(
                    gcm_nonce(rtp_salt, ssrc, index),
                    aead::Aad::from(&*head),
                    rest,
                )
                .map_err(|_| Refused::Auth)?;
            }
            Keys::Cm {
                rtp,
                rtp_auth,
                rtp_salt,
                ..
            } => {
                let roc = ((index >> 16) as u32).to_be_bytes();
                let mut ctx = hmac::Context::with_key(rtp_auth);
                ctx.update(&buf[..len]);
                ctx.update(&roc);
                let tag = ctx.sign();
                if !constant_eq(&tag.as_ref()[..10], &buf[len..len + 10]) {
                    return Err(Refused::Auth);
                }
                cm_apply(rtp, cm_iv(rtp_salt, ssrc, index), &mut buf[hl..len]);
            }
        }
        st.rtp_window.accept(index);
        if !st.rtp_started || index > st.rtp_index {
            st.rtp_started = true;
            st.rtp_index = index;
        }
        Ok(len)
    }

    /// Protects the RTCP compound in `buf[..len]` in place (encrypted, E flag set); returns
    /// the protected length.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Refused> {
        if len < 8 {
            return Err(Refused::Malformed);
        }
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let st = self.states.get(ssrc);
        // The first index sent is 1, as libsrtp (Chromium's SRTP) and rtc-srtp count.
        let index = (st.rtcp_next + 1) & 0x7fff_ffff;
        st.rtcp_next = index;
        let word = (E_FLAG | index).to_be_bytes();
        match &self.keys {
            Keys::Gcm {
                rtcp, rtcp_salt, ..
            } => {
                let out = len + 16 + 4;
                if buf.len() < out {
                    return Err(Refused::NoRoom);
                }
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&buf[..8]);
                aad[8..].copy_from_slice(&word);
                let tag = rtcp
                    .seal_in_place_separate_tag(
                        gcm_nonce(rtcp_salt, ssrc, u64::from(index)),
                        aead::Aad::from(aad),
                        &mut buf[8..len],
                    )
                    .map_err(|_| Refused::Malformed)?;
                buf[len..len + 16].copy_from_slice(tag.as_ref());
                buf[len + 16..out].copy_from_slice(&word);
                Ok(out)
            }
            Keys::Cm {
                rtcp,
                rtcp_auth,
                rtcp_salt,
                ..
            } => {
                let out = len + 4 + 10;
                if buf.len() < out {
                    return Err(Refused::NoRoom);
                }
                cm_apply(
                    rtcp,
                    cm_iv(rtcp_salt, ssrc, u64::from(index)),
                    &mut buf[8..len],
                );
                buf[len..len + 4].copy_from_slice(&word);
                let tag = hmac::sign(rtcp_auth, &buf[..len + 4]);
                buf[len + 4..out].copy_from_slice(&tag.as_ref()[..10]);
                Ok(out)
            }
        }
    }

    /// Unprotects the SRTCP packet `buf` in place; returns the plain RTCP length.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, Refused> {
        let (tag_len, trailer) = match self.profile {
            Profile::AeadAes128Gcm => (16, 20),
            Profile::Aes128CmHmacSha1_80 => (10, 14),
        };
        if buf.len() < 8 + trailer {
            return Err(Refused::Malformed);
        }
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let n = buf.len();
        let (len, word_at) = match self.profile {
            Profile::AeadAes128Gcm => (n - trailer, n - 4),
            Profile::Aes128CmHmacSha1_80 => (n - trailer, n - trailer),
        };
        let word = u32::from_be_bytes([
            buf[word_at],
            buf[word_at + 1],
            buf[word_at + 2],
            buf[word_at + 3],
        ]);
        let index = word & 0x7fff_ffff;
        let encrypted = word & E_FLAG != 0;
        let st = self.states.get(ssrc);
        if !st.rtcp_window.check(u64::from(index)) {
            return Err(Refused::Replay);
        }
        match &self.keys {
            Keys::Gcm {
                rtcp, rtcp_salt, ..
            } => {
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&buf[..8]);
                aad[8..].copy_from_slice(&word.to_be_bytes());
                let nonce = gcm_nonce(rtcp_salt, ssrc, u64::from(index));
                if encrypted {
                    rtcp.open_in_place(nonce, aead::Aad::from(aad), &mut buf[8..len + tag_len])
                        .map_err(|_| Refused::Auth)?;
                } else {
                    // Unencrypted SRTCP under GCM: the whole packet is authenticated data.
                    return Err(Refused::Auth);
                }
            }
            Keys::Cm {
                rtcp,
                rtcp_auth,
                rtcp_salt,
                ..
            } => {
                let tag = hmac::sign(rtcp_auth, &buf[..len + 4]);
                if !constant_eq(&tag.as_ref()[..10], &buf[len + 4..len + 14]) {
                    return Err(Refused::Auth);
                }
                if encrypted {
                    cm_apply(
                        rtcp,
                        cm_iv(rtcp_salt, ssrc, u64::from(index)),
                        &mut buf[8..len],
                    );
                }
            }
        }
        st.rtcp_window.accept(u64::from(index));
        Ok(len)
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 111];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&1234u32.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn reference(profile: Profile, key: &[u8], salt: &[u8]) -> srtp::context::Context {
        let p = match profile {
            Profile::AeadAes128Gcm => srtp::protection_profile::ProtectionProfile::AeadAes128Gcm,
            Profile::Aes128CmHmacSha1_80 => {
                srtp::protection_profile::ProtectionProfile::Aes128CmHmacSha1_80
            }
        };
        let provider = rtc_crypto::default_provider().unwrap();
        srtp::context::Context::new(key, salt, p, None, None, provider.crypto()).unwrap()
    }

    const PROFILES: [Profile; 2] = [Profile::AeadAes128Gcm, Profile::Aes128CmHmacSha1_80];

    #[test]
    fn rtp_matches_the_reference_both_ways() {
        for profile in PROFILES {
            let key = [7u8; 16];
            let salt = &[9u8; 14][..profile.salt_len()];
            let mut ours = Context::new(profile, &key, salt).unwrap();
            let mut theirs = reference(profile, &key, salt);
            let mut ours_rx = Context::new(profile, &key, salt).unwrap();
            let mut theirs_tx = reference(profile, &key, salt);
            // Across a sequence rollover, so the ROC counts.
            for seq in (65530u16..=65535).chain(0..6) {
                let plain = rtp(seq, 0xdead_beef, &[seq as u8; 160]);
                let mut buf = plain.clone();
                buf.resize(plain.len() + MAX_TRAILER, 0);
                let n = ours.protect_rtp(&mut buf, plain.len()).unwrap();
                let want = theirs_tx.encrypt_rtp(&plain).unwrap();
                assert_eq!(&buf[..n], &want[..], "{profile:?} seq {seq}");
                let back = theirs.decrypt_rtp(&buf[..n]).unwrap();
                assert_eq!(&back[..], &plain[..]);
                let mut rx = want.to_vec();
                let m = ours_rx.unprotect_rtp(&mut rx).unwrap();
                assert_eq!(&rx[..m], &plain[..]);
            }
        }
    }

    #[test]
    fn rtcp_matches_the_reference_both_ways() {
        for profile in PROFILES {
            let key = [3u8; 16];
            let salt = &[5u8; 14][..profile.salt_len()];
            let mut ours = Context::new(profile, &key, salt).unwrap();
            let mut theirs = reference(profile, &key, salt);
            let mut ours_rx = Context::new(profile, &key, salt).unwrap();
            let mut theirs_tx = reference(profile, &key, salt);
            // A receiver report with one block and a PLI.
            let mut plain = vec![0x81, 201, 0, 7];
            plain.extend_from_slice(&0x1111_2222u32.to_be_bytes());
            plain.extend_from_slice(&[0xab; 24]);
            plain.extend_from_slice(&[0x81, 206, 0, 2]);
            plain.extend_from_slice(&0x1111_2222u32.to_be_bytes());
            plain.extend_from_slice(&0x3333_4444u32.to_be_bytes());
            for _ in 0..3 {
                let mut buf = plain.clone();
                buf.resize(plain.len() + MAX_TRAILER, 0);
                let n = ours.protect_rtcp(&mut buf, plain.len()).unwrap();
                let back = theirs.decrypt_rtcp(&buf[..n]).unwrap();
                assert_eq!(&back[..], &plain[..], "{profile:?}");
                let want = theirs_tx.encrypt_rtcp(&plain).unwrap();
                assert_eq!(&buf[..n], &want[..], "{profile:?}");
                let mut rx = want.to_vec();
                let m = ours_rx.unprotect_rtcp(&mut rx).unwrap();
                assert_eq!(&rx[..m], &plain[..]);
            }
        }
    }

    #[test]
    fn bad_tags_and_replays_are_refused() {
        for profile in PROFILES {
            let key = [1u8; 16];
            let salt = &[2u8; 14][..profile.salt_len()];
            let mut tx = Context::new(profile, &key, salt).unwrap();
            let mut rx = Context::new(profile, &key, salt).unwrap();
            let plain = rtp(10, 42, &[1; 50]);
            let mut buf = plain.clone();
            buf.resize(plain.len() + MAX_TRAILER, 0);
            let n = tx.protect_rtp(&mut buf, plain.len()).unwrap();
            let good = buf[..n].to_vec();
            let mut bad = good.clone();
            *bad.last_mut().unwrap() ^= 1;
            assert_eq!(rx.unprotect_rtp(&mut bad), Err(Refused::Auth));
            let mut ok = good.clone();
            assert_eq!(rx.unprotect_rtp(&mut ok), Ok(plain.len()));
            let mut again = good.clone();
            assert_eq!(rx.unprotect_rtp(&mut again), Err(Refused::Replay));
            assert_eq!(rx.unprotect_rtp(&mut [0x80, 1, 2]), Err(Refused::Malformed));
        }
    }

    #[test]
    fn window_accepts_reordering_within_it() {
        let mut w = Window::default();
        for i in [5u64, 3, 9, 4, 200] {
            assert!(w.check(i));
            w.accept(i);
        }
        assert!(!w.check(9));
        assert!(!w.check(200 - 128));
        assert!(w.check(199));
    }

    /// RFC 3711 Appendix B.3: the key derivation test vectors.
    #[test]
    fn key_derivation_matches_rfc3711_b3() {
        let key = hex::decode("E1F97A0D3E018BE0D64FA32C06DE4139").unwrap();
        let salt = hex::decode("0EC675AD498AFEEBB6960B3AABE6").unwrap();
        let master = Aes128::new_from_slice(&key).unwrap();
        let mut enc = [0u8; 16];
        derive(&master, &salt, 0, &mut enc);
        assert_eq!(hex::encode_upper(enc), "C61E7A93744F39EE10734AFE3FF7A087");
        let mut s = [0u8; 14];
        derive(&master, &salt, 2, &mut s);
        assert_eq!(hex::encode_upper(s), "30CBBC08863D8C85D49DB34A9AE1");
        let mut auth = [0u8; 20];
        derive(&master, &salt, 1, &mut auth);
        assert_eq!(
            hex::encode_upper(auth),
            "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"
        );
    }
}
