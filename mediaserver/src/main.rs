//! `mediaserver`: one media server of the NOC as its own process.

use clap::Parser;
use mediaserver::MediaServerArgs;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let settings = match MediaServerArgs::parse().resolve() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mediaserver: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match mediaserver::start(settings).await {
        Ok(r) => {
            println!("mediaserver {} {}", r.id, r.client_addr);
            for a in &r.media_addrs {
                println!("media {a}");
            }
            let _ = tokio::signal::ctrl_c().await;
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mediaserver: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
