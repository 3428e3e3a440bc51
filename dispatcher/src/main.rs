//! `dispatcher`: the NOC's dispatch server as its own process, or with `--switch` the
//! dispatcher switch in front of several of them.

use dispatcher::DispatcherArgs;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Before anything else: SIGHUP (logrotate's `postrotate`) must never end the process.
    let hangups = hangups();
    let args = match settings::startup::<DispatcherArgs>("dispatcher", "info", 2) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match args.switch_mode() {
        Ok(Some((listen, backends, limits))) => {
            tokio::spawn(on_hangup(hangups, None));
            return switch(listen, backends, limits).await;
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("dispatcher: {e}");
            return std::process::ExitCode::from(2);
        }
    }
    let settings = match args.resolve() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dispatcher: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    control::raise_fd_limit();
    match dispatcher::start(settings).await {
        Ok(r) => {
            tokio::spawn(on_hangup(hangups, Some(r.service.clone())));
            println!("dispatcher {}", r.client_addr);
            println!("registry {}", r.registry_addr);
            if let Some(h) = r.http_addr {
                let ws = if r.service.settings().tls.tls_cert.is_some() {
                    "wss"
                } else {
                    "ws"
                };
                println!("http {h}");
                println!("websocket {ws}://{h}/ws");
            }
            stop_signal().await;
            // Control sessions end cleanly before the process goes.
            r.shutdown(std::time::Duration::from_secs(2)).await;
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dispatcher: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn switch(
    listen: std::net::SocketAddr,
    backends: Vec<std::net::SocketAddr>,
    limits: control::Limits,
) -> std::process::ExitCode {
    control::raise_fd_limit();
    let shutdown = control::Shutdown::new();
    match dispatcher::switch::start(listen, backends, limits, shutdown.clone()).await {
        Ok((addr, _task)) => {
            println!("switch {addr}");
            stop_signal().await;
            shutdown.shutdown(std::time::Duration::from_secs(2)).await;
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dispatcher: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// The SIGHUP stream, installed at once so a hangup during start-up is not fatal.
fn hangups() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{signal, SignalKind};
    signal(SignalKind::hangup())
        .inspect_err(|e| tracing::warn!(error = %e, "no SIGHUP handler"))
        .ok()
}

/// Each SIGHUP reopens the usage log (logrotate moved it away); the switch has none and
/// only notes it.
async fn on_hangup(
    hangups: Option<tokio::signal::unix::Signal>,
    service: Option<std::sync::Arc<dispatcher::Service>>,
) {
    let Some(mut hangups) = hangups else { return };
    while hangups.recv().await.is_some() {
        let reopened = service.as_ref().is_some_and(|s| s.reopen_usage_log());
        tracing::info!(reopened, "SIGHUP: usage log reopened if there is one");
    }
}

/// SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
