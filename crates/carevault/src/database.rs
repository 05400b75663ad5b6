//! Which database a command runs against: `DATABASE_URL`, or the embedded default.

use std::str::FromStr;

use anyhow::{Context, bail};
use carevault_db::cluster::{self, LoginFacts};
use carevault_db::{AppPool, migrate};
use carevault_pg::{Cluster, SUPERUSER};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use crate::embedded;
use crate::redact::redact;

/// The owner URL of the database, and the embedded cluster when we are running on it.
pub struct Database {
    url: String,
    embedded: Option<Cluster>,
}

impl Database {
    /// `database_url` when given; otherwise starts (or reuses) the embedded cluster, unless
    /// `CAREVAULT_EMBEDDED=0` refuses it ([`crate::config::embedded_allowed`]).
    pub async fn open(database_url: Option<String>) -> anyhow::Result<Database> {
        match database_url {
            Some(url) => {
                tracing::info!(url = %redact(&url), "using DATABASE_URL");
                Ok(Database { url, embedded: None })
            }
            None => {
                // Before anything is started: the container image refuses the embedded default.
                crate::config::embedded_allowed(&crate::env_var)?;
                tracing::info!("DATABASE_URL is unset: using the embedded PostgreSQL");
                let cluster = embedded::start().await?;
                let url = cluster.url(SUPERUSER, embedded::DATABASE);
                Ok(Database { url, embedded: Some(cluster) })
            }
        }
    }

    /// A small pool on the owner URL. Statement logging is off: migration SQL is noise on
    /// stderr, and statements elsewhere can carry PHI.
    pub async fn owner_pool(&self) -> anyhow::Result<PgPool> {
        owner_pool(&self.url).await
    }

    /// The URL the CLI's platform and tenant transactions log in with: on the embedded default
    /// the least-privileged login role (`carevault_ops` / `carevault_api`), otherwise
    /// `DATABASE_URL` (which can switch to either runtime role).
    pub fn login_url(&self, login: &str) -> String {
        match &self.embedded {
            Some(cluster) => cluster.url(login, embedded::DATABASE),
            None => self.url.clone(),
        }
    }

    /// The tenant path's pool of an owner-run command: it logs in as [`Database::login_url`]
    /// (`carevault_api`) and proves tenant contexts with a key the owner adds for
    /// [`carevault_db::tenant_context::OWNER_KEY_LIFETIME`] ([`AppPool::over_owner`]).
    pub async fn app_pool(&self, owner: &PgPool) -> anyhow::Result<AppPool> {
        let keyed = AppPool::over_owner(owner).await.context("cannot add a key of the tenant context")?;
        Ok(keyed.with_url(&self.login_url("carevault_api"), crate::admin::pool_config())?)
    }

    /// Makes sure the schema is at this binary's head: migrates the embedded default (it is
    /// ours), and refuses an external database that is not, naming the fix.
    pub async fn ensure_schema(&self, owner: &PgPool) -> anyhow::Result<()> {
        if self.embedded.is_some() {
            let report = migrate::up(owner).await.context("migrating the embedded PostgreSQL failed")?;
            if report.from_version != report.to_version {
                tracing::info!(from = report.from_version, to = report.to_version, "migrations applied");
            }
            return Ok(());
        }
        let current = migrate::current_version(owner).await?;
        let head = migrate::head_version();
        match current.cmp(&head) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Less => {
                bail!(
                    "the database is at migration version {current}, this binary expects {head}: run `carevault migrate up` first"
                )
            }
            std::cmp::Ordering::Greater => bail!(
                "the database is at migration version {current}, newer than this binary's {head}: use a newer carevault"
            ),
        }
    }

    /// Stops the embedded cluster if this process started it and nobody else uses it.
    pub async fn close(self) {
        if let Some(cluster) = self.embedded {
            embedded::stop(cluster).await;
        }
    }
}

/// A small pool on `url`, connected (so that an unreachable server is reported with its cause).
pub async fn owner_pool(url: &str) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url)
        .with_context(|| format!("DATABASE_URL {} is not a valid PostgreSQL URL", redact(url)))?
        .disable_statement_logging();
    // One direct connection first: the pool retries an unreachable server until its acquire
    // timeout and then reports only "pool timed out", hiding the cause (connection refused,
    // unknown host, ...).
    let probe =
        PgConnection::connect_with(&options).await.with_context(|| format!("cannot connect to {}", redact(url)))?;
    // Failing to close the probe politely changes nothing.
    let _ = probe.close().await;
    PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .with_context(|| format!("cannot connect to {}", redact(url)))
}

/// Connects once to `url` and reads what its login role may do (superuser, `BYPASSRLS`).
pub async fn login_facts(url: &str) -> anyhow::Result<LoginFacts> {
    let options = PgConnectOptions::from_str(url)?.disable_statement_logging();
    let mut conn = tokio::time::timeout(std::time::Duration::from_secs(10), PgConnection::connect_with(&options))
        .await
        .context("timed out connecting")??;
    let facts = cluster::login_facts(&mut conn).await?;
    // Failing to close politely changes nothing.
    let _ = conn.close().await;
    Ok(facts)
}
