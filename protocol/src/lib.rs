//! The NOC's control protocol: one sans-IO codec used by every TCP link.
//!
//! Seed 003 speaks "a simple TCP text protocol" between clients, dispatchers and media
//! servers. This crate owns its wire form so that every link parses and writes it the same
//! way: UTF-8 lines ended by LF, TAB-separated fields, the verb first, optional `key=value`
//! fields last. `docs/protocol.md` is the normative spec; this crate is its implementation.
//!
//! - [`LineBuffer`] frames a byte stream into lines (4096-byte limit, UTF-8 checked).
//! - [`ClientMsg`]/[`ServerMsg`] are the client <-> server (dispatcher or media server) messages.
//! - [`MsMsg`]/[`DispMsg`] are the media server <-> dispatcher registry messages.
//! - [`ticket`] signs and checks will-call tickets (HMAC-SHA256).
//! - [`CostModel`] is the capacity cost model and [`codec`] the RTP codec table, the
//!   contracts the dispatcher, the media servers and the clients must read alike.
//!
//! No I/O and no clock live here: callers feed bytes in and pass the time in.

pub mod cascade;
mod client;
pub mod codec;
mod codes;
mod cost;
mod error;
mod fields;
mod line;
mod registry;
pub mod sdp;
mod server;
pub mod ticket;
mod types;

pub use cascade::LinkMsg;
pub use client::{ChannelOpts, ClientMsg, JoinOpts, ServerMsg, MAX_SIMULCAST_EXTRA};
pub use codes::{error_line, ErrorCode};
pub use cost::{CostModel, UNITS_PER_CORE};
pub use error::{clip, quote, ProtoError, QUOTE_MAX};
pub use line::{message_line, redact_line, split_line, LineBuffer};
pub use registry::{DispMsg, Member, MsMsg};
pub use sdp::{SdpAssembler, SdpKind};
pub use server::{RETRY_DEFAULT, RETRY_MAX};
pub use types::{
    Actor, Capabilities, ChannelAddr, Endpoint, Layout, MediaKind, Mode, Quality, Role, ServerKind,
};

/// Protocol version carried in `connect`.
pub const VERSION: u32 = 1;
/// Longest accepted line in bytes, without its LF.
pub const MAX_LINE: usize = 4096;
/// The seed's well-known control port.
pub const DEFAULT_PORT: u16 = 3450;

/// Parses one line of any message kind and discards the result; the fuzz targets call this.
pub fn fuzz_parse(data: &[u8]) {
    // The WHIP/WHEP offer scan reads whole request bodies.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sdp::http_media(text, true);
        let _ = sdp::http_media(text, false);
    }
    let mut lb = LineBuffer::new();
    lb.extend(data);
    lb.extend(b"\n");
    while let Some(line) = lb.next_line() {
        let Ok(line) = line else { break };
        for text in [
            ClientMsg::parse(&line).map(|m| m.encode()),
            ServerMsg::parse(&line).map(|m| m.encode()),
            MsMsg::parse(&line).map(|m| m.encode()),
            DispMsg::parse(&line).map(|m| m.encode()),
            LinkMsg::parse(&line).map(|m| m.encode()),
        ]
        .into_iter()
        .flatten()
        {
            // What we write must parse back: the codec is its own inverse.
            let again = text.trim_end_matches('\n');
            assert!(
                ClientMsg::parse(again).is_ok()
                    || ServerMsg::parse(again).is_ok()
                    || MsMsg::parse(again).is_ok()
                    || DispMsg::parse(again).is_ok()
                    || LinkMsg::parse(again).is_ok(),
                "encoded line does not parse back: {again:?}"
            );
        }
    }
}
