//! `carevault`: the command line wiring configuration (docs/ARCHITECTURE.md, "External contracts") to the crates that do the work.
//!
//! Results go to stdout, diagnostics (logs, errors) to stderr, so that output can be piped.

mod admin;
mod audit_cmd;
mod cli;
mod config;
mod context_key_cmd;
mod database;
mod demo;
mod dev_secret;
mod doctor_cmd;
mod embedded;
mod healthcheck;
mod import_cmd;
mod migrate_cmd;
mod redact;
mod search_cmd;
mod serve;
mod token_cmd;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_logs = init_tracing();
    // The server gets every core; the one-shot commands need one thread.
    let builder = match cli.command {
        Command::Serve(_) => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match { builder }.enable_all().build() {
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
            if json_logs {
                // Log collectors expect one JSON object per line in production.
                tracing::error!(error = format!("{e:#}"), "carevault failed");
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args.listen).await,
        Command::Migrate(args) => migrate_cmd::run(args.command, cli.database_url).await,
        Command::Tenant(args) => admin::tenant(args.command, cli.database_url).await,
        Command::User(args) => admin::user(args.command, cli.database_url).await,
        Command::Documents(args) => import_cmd::run(args.command, cli.database_url).await,
        Command::Search(args) => match args.command {
            cli::SearchCommand::Reconcile => search_cmd::reconcile(cli.database_url).await,
        },
        Command::Audit(args) => audit_cmd::run(args.command, cli.database_url).await,
        Command::Token(args) => token_cmd::run(args.command, cli.database_url.as_deref()),
        Command::ContextKey(args) => context_key_cmd::run(args.command, cli.database_url).await,
        Command::Doctor(args) => doctor_cmd::run(args.json, cli.database_url).await,
        Command::Healthcheck(args) => healthcheck::run(args.listen).await,
    }
}

/// The process environment as a lookup for [`config`]: unset → `None`; a value that is not UTF-8
/// is passed on (lossily) so that validation names the variable instead of ignoring it.
pub fn env_var(name: &str) -> Option<String> {
    std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
}

/// Logs to stderr, filtered by `LOG_LEVEL` (default `info`); JSON lines when
/// `ENVIRONMENT=production` (then returns `true`).
fn init_tracing() -> bool {
    let level = std::env::var("LOG_LEVEL").ok().filter(|v| !v.trim().is_empty()).unwrap_or_else(|| "info".into());
    // sqlx logs every server NOTICE at info ("extension vector already exists, skipping" from the
    // idempotent bootstrap): noise, unless the operator asks about sqlx explicitly.
    let directives = if level.contains("sqlx") { level } else { format!("{level},sqlx::postgres::notice=warn") };
    let (filter, invalid) = match EnvFilter::try_new(&directives) {
        Ok(filter) => (filter, None),
        Err(e) => (EnvFilter::new("info,sqlx::postgres::notice=warn"), Some(e)),
    };
    let production = env_var("ENVIRONMENT").is_some_and(|e| e.trim() == "production");
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if production {
        builder.json().with_current_span(false).init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
    if let Some(e) = invalid {
        tracing::warn!("LOG_LEVEL is not a valid tracing filter ({e}); using `info`");
    }
    production
}
