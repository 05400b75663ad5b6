//! `carevault`: the command line wiring configuration (DESIGN §7) to the crates that do the work.
//!
//! Results go to stdout, diagnostics (logs, errors) to stderr, so that output can be piped.

mod cli;
mod database;
mod embedded;
mod migrate_cmd;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate(args) => migrate_cmd::run(args.command, cli.database_url).await,
    }
}

/// Logs to stderr, filtered by `LOG_LEVEL` (DESIGN §7.1; default `info`).
fn init_tracing() {
    let level = std::env::var("LOG_LEVEL").ok().filter(|v| !v.trim().is_empty()).unwrap_or_else(|| "info".into());
    // sqlx logs every server NOTICE at info ("extension vector already exists, skipping" from the
    // idempotent bootstrap): noise, unless the operator asks about sqlx explicitly.
    let directives = if level.contains("sqlx") { level } else { format!("{level},sqlx::postgres::notice=warn") };
    let (filter, invalid) = match EnvFilter::try_new(&directives) {
        Ok(filter) => (filter, None),
        Err(e) => (EnvFilter::new("info,sqlx::postgres::notice=warn"), Some(e)),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Some(e) = invalid {
        tracing::warn!("LOG_LEVEL is not a valid tracing filter ({e}); using `info`");
    }
}
