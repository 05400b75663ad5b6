//! The transport of the doctor's own connection.

use sqlx::PgPool;

use super::Check;
use crate::{DbError, Environment};

/// This connection's transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFacts {
    /// `pg_stat_ssl.ssl`.
    pub encrypted: bool,
    /// `pg_stat_ssl.version` (e.g. `TLSv1.3`).
    pub version: Option<String>,
    /// `inet_client_addr()`: `None` over a Unix socket.
    pub client_addr: Option<String>,
}

pub(super) async fn tls_facts(pool: &PgPool) -> Result<TlsFacts, DbError> {
    let (encrypted, version, client_addr): (Option<bool>, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT (SELECT ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_backend_pid()), \
                (SELECT version FROM pg_catalog.pg_stat_ssl WHERE pid = pg_backend_pid()), \
                host(inet_client_addr())",
    )
    .fetch_one(pool)
    .await?;
    Ok(TlsFacts { encrypted: encrypted.unwrap_or(false), version, client_addr })
}

/// Encrypted, or local (a Unix socket or loopback: nothing crosses a network); otherwise WARN
/// outside development.
pub fn evaluate_tls(facts: &TlsFacts, environment: Environment) -> Check {
    const NAME: &str = "tls";
    if facts.encrypted {
        return Check::pass(NAME, format!("encrypted ({})", facts.version.as_deref().unwrap_or("TLS")));
    }
    let Some(addr) = &facts.client_addr else {
        return Check::pass(NAME, "local Unix socket: no network to encrypt");
    };
    if addr == "127.0.0.1" || addr == "::1" {
        return Check::pass(NAME, "not encrypted, over loopback: nothing leaves this machine");
    }
    if environment == Environment::Development {
        return Check::pass(NAME, format!("not encrypted over TCP (from {addr}); acceptable in development only"));
    }
    Check::warn(
        NAME,
        format!("the connection is not encrypted (TCP from {addr}): PHI and passwords cross the network in clear"),
        "enable ssl on the server and add sslmode=verify-full (or at least sslmode=require) to DATABASE_URL, \
         APP_DATABASE_URL and PLATFORM_DATABASE_URL",
    )
}
