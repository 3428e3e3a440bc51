//! Load testing and benchmarks for the NOC's media path.
//!
//! Issue 3 asks for a media engine "near the limit of the machine" and for load testers to
//! prove it. Absolute packet rates drift on shared machines, so every headline figure here is
//! measured against a baseline taken in the same run. This crate holds the tools for that:
//!
//! - `loadgen` (binary, [`run`]): real participants through the real join flow (dispatcher
//!   `join` -> `dispatch` -> media server `join ticket=` -> `accept` -> `channel`), sending
//!   audio- and video-like RTP whose payload carries a send timestamp and a sequence
//!   ([`wire`]), and measuring loss, duplicates, lateness and one-way latency per stream
//!   ([`stats`]) together with the server's CPU time ([`cpu`]). `--sweep` steps the offered
//!   load up to saturation and plots it ([`plot`]).
//!   `--janus` drives a Janus VideoRoom with the same WebRTC participants ([`janus`]), the
//!   peer of the WebRTC fan-out comparison.
//! - `rawfwd` (binary, [`rawfwd`]): the physical baseline, a plain recvmmsg/sendmmsg
//!   forwarder with no mesh, driven by the same `loadgen --raw`.
//! - `benches/mesh.rs` (criterion): the mesh's cost per forwarded packet without I/O.
//!
//! Performance figures live in `docs/benchmarks.md`, never as timing asserts in tests.

pub mod config;
pub mod control;
pub mod cpu;
mod error;
pub mod janus;
pub mod netio;
pub mod plot;
pub mod rawfwd;
pub mod receiver;
pub mod report;
pub mod run;
pub mod sender;
pub mod stats;
pub mod wire;

pub use error::BenchError;
