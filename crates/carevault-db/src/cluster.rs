//! Statements about the PostgreSQL cluster as a whole rather than one database's schema: which
//! databases exist, creating one, and what the current login may do. They read or change shared
//! catalogs (`pg_database`, `pg_roles`), touch no tenant data, and run on a plain connection.
//!
//! The `carevault` binary uses them to create its database on the embedded PostgreSQL and to warn
//! when a pool logs in as a role that row-level security does not apply to.

use sqlx::{AssertSqlSafe, PgConnection};

use crate::{DbError, ValidationError};

/// PostgreSQL truncates identifiers to `NAMEDATALEN - 1` bytes; a longer name would silently
/// become another one.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// SQLSTATE `42P04` duplicate_database.
const DUPLICATE_DATABASE: &str = "42P04";

/// Whether the cluster has a database named `name`.
pub async fn database_exists(conn: &mut PgConnection, name: &str) -> Result<bool, DbError> {
    let exists = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(conn)
        .await?;
    Ok(exists)
}

/// What [`create_database`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseCreation {
    /// The database was created, owned by the current login.
    Created,
    /// A database of that name exists already (made by another process in the meantime, say).
    AlreadyExists,
}

/// Creates the database `name` with the cluster's defaults, owned by the current login (which
/// needs `CREATEDB`). A database that already exists is not an error but
/// [`DatabaseCreation::AlreadyExists`], so that processes starting at once can all call this.
///
/// Takes a connection, not a transaction: `CREATE DATABASE` cannot run inside a transaction
/// block. Check [`database_exists`] first where an existing database is the usual case: the
/// refused `CREATE DATABASE` is logged as an error by the server.
pub async fn create_database(conn: &mut PgConnection, name: &str) -> Result<DatabaseCreation, DbError> {
    // CREATE DATABASE is a utility statement: it takes no bind parameters, so the name is quoted.
    let statement = format!("CREATE DATABASE {}", quote_identifier("database", name)?);
    match sqlx::query(AssertSqlSafe(statement)).execute(conn).await {
        Ok(_) => Ok(DatabaseCreation::Created),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(DUPLICATE_DATABASE) => {
            Ok(DatabaseCreation::AlreadyExists)
        }
        Err(e) => Err(e.into()),
    }
}

/// What a connection's login role may do, as far as row-level security is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginFacts {
    /// The role the connection logged in as.
    pub role: String,
    /// A superuser: row-level security does not apply to it, and it can switch back from the
    /// runtime role it switched to.
    pub superuser: bool,
    /// `BYPASSRLS`: row-level security does not apply to it.
    pub bypass_rls: bool,
}

/// The attributes of the role `conn` is logged in as (`current_user`, which is the login role
/// until something runs `SET ROLE`).
pub async fn login_facts(conn: &mut PgConnection) -> Result<LoginFacts, DbError> {
    let (role, superuser, bypass_rls): (String, bool, bool) = sqlx::query_as(
        "SELECT rolname::text, rolsuper, rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = current_user",
    )
    .fetch_one(conn)
    .await?;
    Ok(LoginFacts { role, superuser, bypass_rls })
}

/// `name` as a quoted SQL identifier, refused when PostgreSQL would not keep it as written.
fn quote_identifier(field: &'static str, name: &str) -> Result<String, ValidationError> {
    if name.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(ValidationError::new(field, "is longer than PostgreSQL's 63-byte identifiers"));
    }
    if name.contains('\0') {
        return Err(ValidationError::new(field, "must not contain a NUL character"));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

#[cfg(test)]
mod tests {
    use super::quote_identifier;

    #[test]
    fn identifiers_are_quoted_as_written() {
        assert_eq!(quote_identifier("database", "carevault").as_deref(), Ok("\"carevault\""));
        assert_eq!(quote_identifier("database", "Care\"Vault").as_deref(), Ok("\"Care\"\"Vault\""));
        assert_eq!(quote_identifier("database", &"a".repeat(63)).map(|q| q.len()), Ok(65));
    }

    #[test]
    fn names_postgresql_would_change_are_refused() {
        for bad in ["", &"a".repeat(64), "a\0b"] {
            let refused = quote_identifier("database", bad).expect_err("refused");
            assert_eq!(refused.field, "database");
        }
    }
}
