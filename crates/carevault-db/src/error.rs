use std::fmt;

/// A value refused by a domain type (the API answers it with `VAL_003`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// The field that was refused.
    pub field: &'static str,
    /// Why, in words safe to show to the caller (never the value itself: it may be PHI).
    pub reason: &'static str,
}

impl ValidationError {
    /// A refusal of `field` for `reason`.
    pub fn new(field: &'static str, reason: &'static str) -> ValidationError {
        ValidationError { field, reason }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ValidationError {}

/// Errors of the data layer.
///
/// The variants are what a caller must tell apart (not found, conflict, bad input, database
/// unavailable); everything else is [`DbError::Database`].
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No such row in the current tenant. Another tenant's row gives exactly this too.
    #[error("not found")]
    NotFound,
    /// The change conflicts with the current state (an active user already has this email, the
    /// row is not deleted, ...).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The input was refused by a domain type.
    #[error("invalid input: {0}")]
    Invalid(#[from] ValidationError),
    /// No pooled connection became free within the acquire timeout.
    #[error("database pool exhausted")]
    PoolExhausted,
    /// The database could not be reached.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A migration failed.
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database refused the tenant context (`carevault_enter_tenant`, SQLSTATE `CV001`): the
    /// pool's key is not one it holds, or the clocks disagree. Nothing was read or written.
    #[error("the database does not accept this tenant context: {0}")]
    ContextRefused(#[source] sqlx::Error),
    /// The operating system gave no random bytes (for a new key).
    #[error("no randomness from the operating system: {0}")]
    Randomness(String),
    /// Any other database error (permission denied, constraint, ...).
    #[error(transparent)]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for DbError {
    fn from(error: sqlx::Error) -> DbError {
        match error {
            sqlx::Error::PoolTimedOut => DbError::PoolExhausted,
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolClosed => DbError::Unavailable(error),
            sqlx::Error::Database(ref db) if db.code().as_deref().is_some_and(is_transient) => {
                DbError::Unavailable(error)
            }
            sqlx::Error::Database(ref db) if db.code().as_deref() == Some("CV001") => DbError::ContextRefused(error),
            other => DbError::Database(other),
        }
    }
}

/// SQLSTATEs that say "not now" rather than "never": the request may succeed if retried, so the
/// API answers 503 instead of 500 (found by the evidence suite's fault runs).
/// - class 08: connection exception; class 57: operator intervention (server shutting down,
///   `57014` statement timeout / cancel);
/// - `55P03` lock not available (our `lock_timeout`), `53300` too many connections;
/// - `40001` serialization failure, `40P01` deadlock.
fn is_transient(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("57") || matches!(code, "55P03" | "53300" | "40001" | "40P01")
}

impl DbError {
    /// The PostgreSQL SQLSTATE of a database error, if any (e.g. `42501` permission denied).
    pub fn sqlstate(&self) -> Option<String> {
        match self {
            DbError::Database(sqlx::Error::Database(db))
            | DbError::Unavailable(sqlx::Error::Database(db))
            | DbError::ContextRefused(sqlx::Error::Database(db)) => db.code().map(|c| c.into_owned()),
            _ => None,
        }
    }
}

/// Maps a foreign-key violation to [`DbError::NotFound`]: the referenced row does not exist in
/// this tenant (another tenant's row looks exactly like a missing one).
pub(crate) fn missing_reference(error: sqlx::Error) -> DbError {
    match &error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23503") => DbError::NotFound,
        _ => error.into(),
    }
}
