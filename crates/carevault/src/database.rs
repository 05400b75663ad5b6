//! Which database a command runs against: `DATABASE_URL`, or the embedded default.

use std::str::FromStr;

use anyhow::{Context, bail};
use carevault_db::migrate;
use carevault_pg::{Cluster, SUPERUSER};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use crate::embedded;

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

/// What the server should know about the login of one of its pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginPrivileges {
    /// The login role.
    pub role: String,
    /// A superuser: RLS does not apply to it, and it can switch back from the runtime role.
    pub superuser: bool,
    /// BYPASSRLS.
    pub bypass_rls: bool,
}

/// Connects once to `url` and reads its login's attributes.
// Why here and not in carevault-db: it reads a catalog, no tenant data, for a start-up warning;
// `doctor` will own the full version of this check.
pub async fn login_privileges(url: &str) -> anyhow::Result<LoginPrivileges> {
    let options = PgConnectOptions::from_str(url)?.disable_statement_logging();
    let mut conn = tokio::time::timeout(std::time::Duration::from_secs(10), PgConnection::connect_with(&options))
        .await
        .context("timed out connecting")??;
    let (role, superuser, bypass_rls): (String, bool, bool) = sqlx::query_as(
        "SELECT rolname::text, rolsuper, rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut conn)
    .await?;
    let _ = conn.close().await;
    Ok(LoginPrivileges { role, superuser, bypass_rls })
}

/// The URL with its password (in the user info or a `password=` parameter) replaced by `***`,
/// for logs and error messages.
pub fn redact(url: &str) -> String {
    let url = redact_password_parameter(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return url;
    };
    // The user info ends at the last '@' before the path; a password may itself contain '@'.
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url;
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url,
    }
}

/// libpq also accepts the password as a query parameter (`?password=...`).
fn redact_password_parameter(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let parameters: Vec<String> = query
        .split('&')
        .map(|parameter| match parameter.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => parameter.to_string(),
        })
        .collect();
    format!("{base}?{}", parameters.join("&"))
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@db:5432/x"), "postgres://u:***@db:5432/x");
        assert_eq!(redact("postgresql://u:p@ss@db/x?sslmode=require"), "postgresql://u:***@db/x?sslmode=require");
        assert_eq!(redact("postgres://u:secret@db"), "postgres://u:***@db");
        assert_eq!(
            redact("postgres://u@db/x?sslmode=require&password=secret"),
            "postgres://u@db/x?sslmode=require&password=***"
        );
    }

    #[test]
    fn urls_without_password_are_unchanged() {
        for url in ["postgres://postgres@localhost/carevault?host=/tmp/x", "postgres://db/x", "not a url"] {
            assert_eq!(redact(url), url);
        }
    }
}
