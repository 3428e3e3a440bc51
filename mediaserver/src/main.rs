//! `mediaserver`: one media server of the NOC as its own process.
//!
//! SIGINT stops it (its control sessions end, within a short grace); SIGTERM drains it
//! first (see `docs/operations.md`), and a second SIGTERM or SIGINT during the drain
//! stops it at once.

use mediaserver::MediaServerArgs;
use std::time::Duration;

/// How long a stop waits for the control sessions to end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match settings::startup::<MediaServerArgs>("mediaserver", "info", 2) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let settings = match args.resolve() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mediaserver: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    control::raise_fd_limit();
    match mediaserver::start(settings).await {
        Ok(r) => {
            println!("mediaserver {} {}", r.id, r.client_addr);
            for a in &r.media_addrs {
                println!("media {a}");
            }
            println!("http {}", r.http_addr);
            println!("websocket {}", r.ws_url);
            let code = wait_and_drain(&r).await;
            r.shutdown(SHUTDOWN_GRACE).await;
            code
        }
        Err(e) => {
            eprintln!("mediaserver: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Runs until a signal: Ctrl-C stops, SIGTERM drains first. Exit 0 either way.
async fn wait_and_drain(r: &mediaserver::Running) -> std::process::ExitCode {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("mediaserver: cannot install signal handlers: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    tokio::select! {
        _ = int.recv() => {
            tracing::info!("interrupted, stopping now");
            return std::process::ExitCode::SUCCESS;
        }
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
    }
    let again = async {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    };
    let outcome = r.drain(again).await;
    tracing::info!(?outcome, "stopping");
    std::process::ExitCode::SUCCESS
}
