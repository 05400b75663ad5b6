//! Which database a command runs against: `DATABASE_URL`, or the embedded default.

use std::str::FromStr;

use anyhow::Context;
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
    /// `database_url` when given; otherwise starts (or reuses) the embedded cluster.
    pub async fn open(database_url: Option<String>) -> anyhow::Result<Database> {
        match database_url {
            Some(url) => {
                tracing::info!(url = %redact(&url), "using DATABASE_URL");
                Ok(Database { url, embedded: None })
            }
            None => {
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
        let options = PgConnectOptions::from_str(&self.url)
            .with_context(|| format!("DATABASE_URL {} is not a valid PostgreSQL URL", redact(&self.url)))?
            .disable_statement_logging();
        // One direct connection first: the pool retries an unreachable server until its acquire
        // timeout and then reports only "pool timed out", hiding the cause (connection refused,
        // unknown host, ...).
        let probe = PgConnection::connect_with(&options)
            .await
            .with_context(|| format!("cannot connect to {}", redact(&self.url)))?;
        // Failing to close the probe politely changes nothing.
        let _ = probe.close().await;
        PgPoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .with_context(|| format!("cannot connect to {}", redact(&self.url)))
    }

    /// Stops the embedded cluster if this process started it and nobody else uses it.
    pub async fn close(self) {
        if let Some(cluster) = self.embedded {
            embedded::stop(cluster).await;
        }
    }
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
