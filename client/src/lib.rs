//! The conference client: library and the `confclient` binary.
//!
//! Tests, operators and load generators need a real client that speaks the NOC's control
//! protocol and RTP exactly as a user's would, without a browser. This crate is that
//! client, split into reusable parts:
//!
//! - [`flow`]: the join flow (dispatcher -> `dispatch` -> media server -> `accept` ->
//!   `channel`, keepalive, failover) as one sans-IO state machine, shared by confclient,
//!   its external-media mode and loadgen.
//! - [`control`]: its driver over real connections (TCP or WebSocket, through the `control`
//!   crate), and the [`control::Event`] lines the client reports.
//! - [`session`]: the media loop around it; [`session::run`] is a whole client session.
//! - [`packet`]: RTP numbering for sending and RTP/RTCP demux for receiving (`rtc-rtp`).
//! - [`mixer`]: the sans-IO receive side: per-SSRC adaptive jitter buffer, Opus decode with
//!   PLC, and a saturating mix on a wall-clock timeline; [`recorder`] drives it and writes
//!   the WAV.
//! - [`tone`]: the test-tone generator and the detector mirroring `tools/tone_check.py`.
//! - [`config`]: the `confclient` flags and their TOML form.
//! - [`external`]: `--external-media`, the control half for a plain-RTP tool (ffmpeg,
//!   GStreamer) that sends and receives the media itself.
//! - [`script`]: `--say`, `--command` and `--volume`, the scheduled chat, moderator
//!   actions and tone levels.
//! - [`clicks`]: `--clicks` and `--detect-clicks`, the mouth-to-ear latency bench.

pub mod clicks;
pub mod config;
pub mod control;
mod error;
pub mod external;
pub mod flow;
pub mod mixer;
pub mod packet;
pub mod recorder;
pub mod script;
pub mod session;
pub mod tone;

pub use error::ClientError;

/// Feeds one datagram through the receive path; the fuzz target calls this. Never panics.
pub fn fuzz_datagram(data: &[u8]) {
    if let packet::Datagram::Rtp(p) = packet::classify(data) {
        let mut m = mixer::Mixer::new(mixer::PLAYOUT_DELAY, true);
        m.push(0, &p);
        let mut out = Vec::new();
        m.advance(mixer::PLAYOUT_DELAY + 2_000, &mut out);
    }
}
