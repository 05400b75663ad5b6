//! The verified tenant context: the key the service and the database share, and the proof the
//! policies accept (migration 18; docs/THREAT_MODEL.md, "A tenant context the database verifies").
//!
//! A [`TenantTx`](crate::TenantTx) sets `app.tenant_context` to a proof
//!
//! ```text
//! <kind>.<kid>.<tenant>.<user or empty>.<expires, unix seconds>.<HMAC-SHA256, 64 hex>
//! ```
//!
//! whose MAC also covers a [`Binding`] to the connection or the transaction, which the database
//! reads for itself and which never travels in the proof. The
//! SQL verifier, `carevault_current_tenant()`, recomputes the MAC with the key from a table only its
//! owner can read and returns the tenant only when it matches.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use crate::{DbError, TenantId, UserId};

/// How long a proof is accepted: a transaction must *start* before it expires (a long one is not
/// cut short). It also bounds the clock difference between the service and the database that
/// goes unnoticed; beyond it, every tenant transaction is refused (`CV001`) and the readiness check fails.
pub const PROOF_LIFETIME: Duration = Duration::from_secs(60);

/// SHA-256's block size: HMAC pads the key to it.
const BLOCK: usize = 64;

/// A key's id (`kid`): 1 to 32 of `a-z`, `0-9` and `-`, not starting with `-` (the CHECK of
/// `carevault_private.tenant_context_keys`). It travels in every proof, so that two keys can be live
/// at once during a rotation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// Validates a key id; the error never repeats the refused text.
    pub fn parse(text: &str) -> Result<KeyId, KeyError> {
        let well_formed = (1..=32).contains(&text.len())
            && !text.starts_with('-')
            && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if well_formed { Ok(KeyId(text.to_string())) } else { Err(KeyError::KeyId) }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a key was refused. The messages name the expected form, never the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not `<kid>:<secret>`.
    #[error("expected <kid>:<secret>, e.g. `prod-2026-12:$(openssl rand -hex 32)`")]
    Form,
    /// The key id is malformed.
    #[error("the key id must be 1 to 32 of a-z, 0-9 and '-', not starting with '-'")]
    KeyId,
    /// The secret is not 64 hexadecimal characters.
    #[error("the secret must be 64 hexadecimal characters (32 random bytes: `openssl rand -hex 32`)")]
    Secret,
}

/// The key of the tenant context (`TENANT_CONTEXT_KEY`): a key id and 32 secret bytes.
///
/// Its `Debug` names the key id only.
#[derive(Clone, PartialEq, Eq)]
pub struct TenantContextKey {
    kid: KeyId,
    secret: [u8; 32],
}

impl fmt::Debug for TenantContextKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantContextKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl TenantContextKey {
    /// Parses `<kid>:<64 hex characters>`.
    pub fn parse(text: &str) -> Result<TenantContextKey, KeyError> {
        let (kid, secret) = text.trim().split_once(':').ok_or(KeyError::Form)?;
        let kid = KeyId::parse(kid)?;
        let secret = crate::hex::decode::<32>(secret).ok_or(KeyError::Secret)?;
        Ok(TenantContextKey { kid, secret })
    }

    /// A new random key named `kid`, from the operating system's generator.
    pub fn generate(kid: KeyId) -> Result<TenantContextKey, DbError> {
        Ok(TenantContextKey { kid, secret: random()? })
    }

    /// The key in the form [`TenantContextKey::parse`] reads, for writing it to a file.
    pub fn to_config_text(&self) -> String {
        format!("{}:{}", self.kid, crate::hex::encode(&self.secret))
    }

    /// The key id.
    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    /// HMAC's inner and outer pads of this key (RFC 2104).
    fn pads(&self) -> ([u8; BLOCK], [u8; BLOCK]) {
        let mut inner = [0x36u8; BLOCK];
        let mut outer = [0x5cu8; BLOCK];
        for (i, byte) in self.secret.iter().enumerate() {
            inner[i] ^= byte;
            outer[i] ^= byte;
        }
        (inner, outer)
    }

    /// HMAC-SHA256 of `message` with this key.
    fn mac(&self, message: &[u8]) -> [u8; 32] {
        let (inner, outer) = self.pads();
        let inner_hash = Sha256::new().chain_update(inner).chain_update(message).finalize();
        Sha256::new().chain_update(outer).chain_update(inner_hash).finalize().into()
    }

    /// The proof for `tenant` and `user` on the server session (and transaction) `binding`,
    /// accepted until `expires` (unix seconds).
    pub fn prove(&self, tenant: TenantId, user: Option<UserId>, binding: &Binding, expires: u64) -> String {
        let user = user.map(|id| id.to_string()).unwrap_or_default();
        let fields = format!("{}.{}.{tenant}.{user}.{expires}", binding.kind(), self.kid);
        let mac = self.mac(format!("{fields}.{}", binding.text()).as_bytes());
        format!("{fields}.{}", crate::hex::encode(&mac))
    }
}

/// What a proof is bound to, as the database reports it; the proof's `kind` field says which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// `c1`: this connection, for the whole of it: its backend pid and the random
    /// `app.connection_nonce` set on it by [`Binding::establish_connection`]. What the service's
    /// pool uses: it learns both once per connection, so a transaction needs no round trip to
    /// read them.
    Connection {
        /// `pg_backend_pid()`.
        pid: i32,
        /// 32 hex characters, sent as a bind parameter (no other session can read it).
        nonce: String,
    },
    /// `t1`: this transaction: the backend pid and the transaction's start. Behind a transaction
    /// pooler, where other clients run on the same server connection, and for owner-run commands.
    Transaction {
        /// `pg_backend_pid()`.
        pid: i32,
        /// `now()` (the transaction's start), unix microseconds.
        start_us: i64,
    },
}

impl Binding {
    /// Binds `conn` (outside a transaction) to a new random nonce, for the rest of the session,
    /// and returns the binding; one round trip.
    pub async fn establish_connection(conn: &mut PgConnection) -> Result<Binding, DbError> {
        let nonce = crate::hex::encode(&random::<16>()?);
        let pid: i32 = sqlx::query_scalar(
            "SELECT pg_catalog.pg_backend_pid() FROM pg_catalog.set_config('app.connection_nonce', $1, false)",
        )
        .bind(&nonce)
        // Unnamed: it runs once per connection.
        .persistent(false)
        .fetch_one(conn)
        .await?;
        Ok(Binding::Connection { pid, nonce })
    }

    /// Reads the binding of the transaction open on `conn`.
    pub async fn read_transaction(conn: &mut PgConnection) -> Result<Binding, DbError> {
        let (pid, start_us): (i32, i64) = sqlx::query_as(
            "SELECT pg_catalog.pg_backend_pid(), (extract(epoch FROM pg_catalog.now()) * 1000000)::bigint",
        )
        // Unnamed: behind a transaction pooler each transaction may reach another server.
        .persistent(false)
        .fetch_one(conn)
        .await?;
        Ok(Binding::Transaction { pid, start_us })
    }

    /// The proof's `kind` field.
    fn kind(&self) -> &'static str {
        match self {
            Binding::Connection { .. } => "c1",
            Binding::Transaction { .. } => "t1",
        }
    }

    /// The text the MAC covers after the proof's fields, as the SQL verifier builds it.
    fn text(&self) -> String {
        match self {
            Binding::Connection { pid, nonce } => format!("{pid}.{nonce}"),
            Binding::Transaction { pid, start_us } => format!("{pid}.{start_us}"),
        }
    }
}

/// When a proof made now expires, in unix seconds.
pub fn expiry_from_now() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (now + PROOF_LIFETIME).as_secs()
}

/// How long the key of an owner-run command ([`crate::AppPool::over_owner`]) verifies: longer
/// than any import or maintenance pass starts transactions for.
pub const OWNER_KEY_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// A new random key named `owner-<12 hex>`, added to the database for [`OWNER_KEY_LIFETIME`] by
/// the owner's `pool`.
pub(crate) async fn owner_key(pool: &sqlx::PgPool) -> Result<TenantContextKey, DbError> {
    let key = TenantContextKey::generate(KeyId(format!("owner-{}", crate::hex::encode(&random::<6>()?))))?;
    let mut conn = pool.acquire().await?;
    install(&mut conn, &key, Some(OWNER_KEY_LIFETIME)).await?;
    Ok(key)
}

/// A key the database holds, as `carevault context-key list` shows it (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InstalledKey {
    /// Its id.
    pub kid: String,
    /// When it was added.
    pub added_at: chrono::DateTime<chrono::Utc>,
    /// When it stops verifying (the short-lived keys of owner-run commands); `None`: until retired.
    pub not_after: Option<chrono::DateTime<chrono::Utc>>,
}

/// What [`install`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// The key was added.
    Added,
    /// The database held this very key already.
    AlreadyPresent,
}

/// Adds `key` to the keys the database accepts; `connection` must be the owner's (or a
/// superuser's). Adding the same key again changes nothing; a key id that names another key is
/// refused ([`DbError::Conflict`]): retire it first. Keys whose `not_after` has passed are
/// removed on the way.
pub async fn install(
    connection: &mut PgConnection,
    key: &TenantContextKey,
    lifetime: Option<Duration>,
) -> Result<Installed, DbError> {
    let (inner, outer) = key.pads();
    let seconds = lifetime.map(|l| i64::try_from(l.as_secs()).unwrap_or(i64::MAX));
    let mut tx = sqlx::Connection::begin(&mut *connection).await?;
    sqlx::query("DELETE FROM carevault_private.tenant_context_keys WHERE not_after <= now()")
        .persistent(false)
        .execute(&mut *tx)
        .await?;
    let added = sqlx::query(
        "INSERT INTO carevault_private.tenant_context_keys (kid, inner_pad, outer_pad, not_after) \
         VALUES ($1, $2, $3, now() + make_interval(secs => $4)) ON CONFLICT (kid) DO NOTHING",
    )
    .bind(key.kid.as_str())
    .bind(&inner[..])
    .bind(&outer[..])
    .bind(seconds)
    .persistent(false)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let outcome = if added == 1 {
        Installed::Added
    } else {
        let same: bool = sqlx::query_scalar(
            "SELECT inner_pad = $2 AND outer_pad = $3 FROM carevault_private.tenant_context_keys WHERE kid = $1",
        )
        .bind(key.kid.as_str())
        .bind(&inner[..])
        .bind(&outer[..])
        .persistent(false)
        .fetch_one(&mut *tx)
        .await?;
        if !same {
            return Err(DbError::Conflict(
                "the key id names another key in this database: pick a new key id, or retire the old key first",
            ));
        }
        Installed::AlreadyPresent
    };
    tx.commit().await?;
    Ok(outcome)
}

/// Removes the key `kid`: proofs made with it stop verifying at once. `false` when there was none.
pub async fn retire(connection: &mut PgConnection, kid: &KeyId) -> Result<bool, DbError> {
    let removed = sqlx::query("DELETE FROM carevault_private.tenant_context_keys WHERE kid = $1")
        .bind(kid.as_str())
        .persistent(false)
        .execute(connection)
        .await?
        .rows_affected();
    Ok(removed == 1)
}

/// The keys the database holds, oldest first.
pub async fn list(connection: &mut PgConnection) -> Result<Vec<InstalledKey>, DbError> {
    Ok(sqlx::query_as(
        "SELECT kid, added_at, not_after FROM carevault_private.tenant_context_keys ORDER BY added_at, kid",
    )
    .persistent(false)
    .fetch_all(connection)
    .await?)
}

/// `N` bytes from the operating system's generator.
pub(crate) fn random<const N: usize>() -> Result<[u8; N], DbError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| DbError::Randomness(e.to_string()))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mac_is_hmac_sha256() {
        // RFC 4231, test case 2 has a 4-byte key; ours are 32 bytes, so check against the
        // definition with a 32-byte key computed independently (Python: hmac.new(bytes(range(32)),
        // b"what do ya want for nothing?", "sha256").hexdigest()).
        let key =
            TenantContextKey::parse(&format!("k:{}", crate::hex::encode(&(0u8..32).collect::<Vec<_>>()))).unwrap();
        assert_eq!(
            crate::hex::encode(&key.mac(b"what do ya want for nothing?")),
            "099805f4ac310786968565c098db515cc50862b420ae31e20238312344bed36a"
        );
    }

    #[test]
    fn keys_parse_only_in_their_form_and_never_echo() {
        let secret = "ab".repeat(32);
        assert!(TenantContextKey::parse(&format!("prod-1:{secret}")).is_ok());
        for bad in [
            "",
            "prod-1",
            &format!("-x:{secret}"),
            &format!("Prod:{secret}"),
            "k:abc",
            &format!("k:{}", "zz".repeat(32)),
        ] {
            let error = TenantContextKey::parse(bad).unwrap_err();
            assert!(bad.len() < 3 || !error.to_string().contains(bad), "{error}");
        }
        let key = TenantContextKey::parse(&format!("prod-1:{secret}")).unwrap();
        assert!(!format!("{key:?}").contains(&secret));
        assert_eq!(TenantContextKey::parse(&key.to_config_text()).unwrap(), key);
    }
}
