//! `confclient`: join a conference from the command line (see `confclient --help`).
//!
//! Prints one line per control event on stdout, logs to stderr (`RUST_LOG`), and exits 0
//! after a clean leave, 2 when a server rejects us (`reject`/`error`), 1 on any other
//! failure (bad flags included).

use client::config::Args;
use client::control::Event;
use client::ClientError;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    // Usage errors exit 1 (not clap's 2): exit code 2 means a server refused us.
    let args = match settings::parse::<Args>() {
        Ok(a) => a,
        Err(settings::SettingsError::Usage(e)) => {
            e.print().ok();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
        Err(e) => {
            let e = client::config::settings_error(e);
            eprintln!("confclient: {e}");
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("confclient: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn run(args: Args) -> Result<(), ClientError> {
    let cfg = args.resolve()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let shutdown = shutdown_signal(cfg.duration)?;
        let mut print = |event: &Event| {
            // A closed stdout must not kill the session; the exit code still tells.
            let mut out = std::io::stdout().lock();
            writeln!(out, "{event}").and_then(|()| out.flush()).ok();
        };
        match &cfg.external {
            Some(ext) => {
                client::external::run(&cfg.session, ext, shutdown, &mut print).await?;
            }
            None => {
                client::session::run(&cfg.session, shutdown, &mut print).await?;
            }
        }
        Ok(())
    })
}

/// Completes after `duration`, on Ctrl-C or on SIGTERM. The handlers are installed now, so
/// a signal that arrives while joining is not lost (nor fatal).
fn shutdown_signal(
    duration: Option<Duration>,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let (mut int, mut term) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        )
    };
    Ok(async move {
        let timer = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        #[cfg(unix)]
        tokio::select! {
            () = timer => {}
            _ = int.recv() => tracing::info!("interrupted, leaving"),
            _ = term.recv() => tracing::info!("terminated, leaving"),
        }
        #[cfg(not(unix))]
        tokio::select! {
            () = timer => {}
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted, leaving"),
        }
    })
}
