//! The tests' shared equipment, so that every crate's tests simulate the same network, build
//! packets the same way and start processes the same way, instead of each carrying its own
//! copy. A dev-dependency only: no shipped crate links it.
//!
//! - [`net`]: a seeded network in virtual time (delay, jitter, loss, duplication,
//!   reordering, rate limit) that packets cross on their way to and from a sans-IO core;
//! - [`packet`]: RTP (audio level, VP8, H.264) and RTCP (SR, RR, SDES, NACK, PLI, FIR, REMB)
//!   packets;
//! - [`rng`]: the one seeded generator;
//! - [`alloc`]: the counting global allocator behind the "no allocation per packet" tests;
//! - [`browser`]: a Rust peer that plays a browser over UDP (offer, ICE check, DTLS-SRTP);
//! - [`conference`]: a conference and its members set up in a mesh;
//! - [`harness`]: real `noc`, `dispatcher`, `mediaserver` and `confclient` processes on
//!   127.0.0.1 with ephemeral ports, HTTP and control-line clients, temporary directories.
//!
//! It panics instead of returning errors: a failure here is a failed test.

pub mod alloc;
pub mod browser;
pub mod conference;
pub mod harness;
pub mod net;
pub mod packet;
pub mod rng;
