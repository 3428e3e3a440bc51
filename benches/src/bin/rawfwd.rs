//! `rawfwd`: the raw forwarding baseline (recvmmsg/sendmmsg, no mesh). Prints
//! `rawfwd ADDR` and `ready`, then forwards until interrupted. Drive it with
//! `loadgen --raw ADDR`.

use clap::Parser;
use serde::{Deserialize, Serialize};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// A plain-socket fan-out forwarder: the physical limit the media server is compared with.
#[derive(Debug, Parser, Serialize, Deserialize)]
#[command(name = "rawfwd", version, about)]
#[serde(deny_unknown_fields)]
struct Args {
    /// TOML file with these settings; flags override it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_deserializing)]
    config: Option<PathBuf>,
    /// UDP address to receive on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Send the copies of a batch that go to one member as one UDP_SEGMENT (GSO) message.
    #[arg(long)]
    gso: bool,
}

fn main() -> std::process::ExitCode {
    let args = match settings::startup::<Args>("rawfwd", "info", 1) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let socket = match UdpSocket::bind(args.listen) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rawfwd: bind {}: {e}", args.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    match socket.local_addr() {
        Ok(a) => println!("rawfwd {a}"),
        Err(e) => {
            eprintln!("rawfwd: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    println!("ready");
    // Runs until killed; the flag is there for tests and embedding.
    let stop = Arc::new(AtomicBool::new(false));
    match benches::rawfwd::serve(&socket, &stop, args.gso) {
        Ok(stats) => {
            tracing::info!(?stats, "rawfwd stopped");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rawfwd: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
