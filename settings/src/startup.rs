//! What every server and tool binary does first: logs, then settings.

use crate::{parse, SettingsError};
use clap::{CommandFactory, FromArgMatches};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::process::ExitCode;

/// Logs to stderr (filtered by `RUST_LOG`, else at `default_log`), then reads `T` with
/// [`parse`]. A bad setting is printed as `PROGRAM: config: ...` and becomes `Err` with
/// `exit_code` for `main` to return; `--help`, `--version` and usage errors exit as clap
/// does.
pub fn startup<T>(program: &str, default_log: &str, exit_code: u8) -> Result<T, ExitCode>
where
    T: CommandFactory + FromArgMatches + Serialize + DeserializeOwned,
{
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_log.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    parse::<T>().map_err(|e: SettingsError| {
        eprintln!("{program}: config: {}", e.exit_on_usage());
        ExitCode::from(exit_code)
    })
}
