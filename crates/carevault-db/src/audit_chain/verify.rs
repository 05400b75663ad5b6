//! Checking the live chain: each tenant's entries against the rows they name, and the rows the
//! sealer should have chained.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, Row, Transaction};

use super::begin_as_sealer;
use super::canonical::{CanonicalRow, GENESIS};
use super::check::{Break, BreakKind, Link, breaks_after, checkpoint_breaks, vouched_head};
use super::checkpoint::{AuditPublicKey, Checkpoint};
use super::heads::checkpoint_from_row;
use super::sink::{CheckpointSink, SinkError};
use crate::domain::TenantId;
use crate::{DbError, PlatformPool};

/// What the verifier trusts that the database cannot change: the public keys of the signing key
/// (current and past), and the sink holding the checkpoints.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Public keys, by key id.
    pub keys: Vec<AuditPublicKey>,
    /// The checkpoints kept outside the database; `None`: only the database's copies (whose
    /// signatures are still checked).
    pub sink: Option<CheckpointSink>,
}

/// Why a check could not run.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Reading the database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Reading the sink failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
}

impl From<sqlx::Error> for VerifyError {
    fn from(error: sqlx::Error) -> VerifyError {
        VerifyError::Db(error.into())
    }
}

/// How long after its `created_at` a row may be sealed before it counts as late: longer than any
/// transaction of the service (its statement timeout is at most a few minutes).
pub const LATE_AFTER_SECONDS: i64 = 600;

/// What the check found for one tenant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TenantVerdict {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Entries in its chain.
    pub chained: u64,
    /// Its last sequence number.
    pub head: Option<i64>,
    /// Rows committed since the sealer's last pass, not chained yet (not a break).
    pub unsealed: u64,
    /// The last place a signed checkpoint vouches for (`None`: no checkpoint yet).
    pub checkpoint: Option<i64>,
    /// Rows sealed more than [`LATE_AFTER_SECONDS`] after their `created_at`: a transaction held
    /// open that long, or a row written with an old time behind the triggers' back. Not a break
    /// (the chain holds them faithfully), but worth a look.
    pub late: u64,
    /// Every break, in sequence order.
    pub breaks: Vec<Break>,
}

impl TenantVerdict {
    /// No break.
    pub fn intact(&self) -> bool {
        self.breaks.is_empty()
    }
}

/// Checks the chain of `tenant`, or of every tenant with audit rows, chain entries or checkpoints
/// (in the database or the sink: a tenant whose whole history was deleted is still checked), in
/// one snapshot, as `carevault_sealer` (read only), against the checkpoints `trust` vouches for.
pub async fn verify(
    pool: &PlatformPool,
    tenant: Option<TenantId>,
    trust: &Trust,
) -> Result<Vec<TenantVerdict>, VerifyError> {
    let mut tx = begin_reading(pool).await?;
    let tenants: Vec<TenantId> = match tenant {
        Some(tenant) => vec![tenant],
        None => {
            let mut tenants: std::collections::BTreeSet<TenantId> = pool
                .statements
                .query_scalar(
                    "SELECT tenant_id FROM audit_logs UNION SELECT tenant_id FROM audit_chain \
                     UNION SELECT tenant_id FROM audit_checkpoints",
                )
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
            if let Some(sink) = &trust.sink {
                tenants.extend(sink.tenants()?);
            }
            tenants.into_iter().collect()
        }
    };
    let mut verdicts = Vec::with_capacity(tenants.len());
    for tenant_id in tenants {
        let links = read_links(pool, &mut tx, tenant_id, SeqRange::ALL).await?;
        // A row of a transaction the last complete pass saw finished was visible to it: unchained,
        // it was put there behind the sealer's back.
        let (behind, unsealed): (i64, i64) = pool
            .statements
            .query_as(concat!(
                "SELECT count(*) FILTER (WHERE pg_visible_in_snapshot(a.xact_id, s.watermark)), \
                            count(*) FILTER (WHERE NOT pg_visible_in_snapshot(a.xact_id, s.watermark)) \
                     FROM audit_logs a CROSS JOIN audit_sealer s WHERE a.tenant_id = $1 AND ",
                not_chained!()
            ))
            .bind(tenant_id)
            .fetch_one(&mut *tx)
            .await?;
        // Two rows under one entry's id (possible only with the primary key dropped): the entry
        // vouches for one of them, and the other would pass for sealed.
        let doubled: Option<i64> = pool
            .statements
            .query_scalar(
                "SELECT min(c.seq) FROM audit_chain c WHERE c.tenant_id = $1 \
                   AND (SELECT count(*) FROM audit_logs l WHERE l.id = c.audit_id AND l.tenant_id = c.tenant_id) > 1",
            )
            .bind(tenant_id)
            .fetch_one(&mut *tx)
            .await?;
        let stored = read_checkpoints(pool, &mut tx, tenant_id, SeqRange::ALL).await?;
        let kept = match &trust.sink {
            Some(sink) => sink.read(tenant_id)?,
            None => Vec::new(),
        };
        let mut verdict = judge(tenant_id, &links, (1, GENESIS), &stored, &kept, &trust.keys);
        if behind > 0 {
            verdict.breaks.push(Break { seq: verdict.head.unwrap_or(0) + 1, kind: BreakKind::InsertedRow });
        }
        if let Some(seq) = doubled {
            verdict.breaks.push(Break { seq, kind: BreakKind::InsertedRow });
        }
        verdict.breaks.sort_by_key(|b| b.seq);
        verdict.unsealed = unsealed as u64;
        verdicts.push(verdict);
    }
    tx.rollback().await?;
    Ok(verdicts)
}

/// The transaction of a check or an export: the sealer's (one snapshot for everything read), with
/// room to compute between queries. The logins' 10 s idle-in-transaction timeout would otherwise
/// end it while a large tenant's hashes are checked (a read-only snapshot held longer only holds
/// back vacuum).
pub(super) async fn begin_reading(pool: &PlatformPool) -> Result<Transaction<'static, Postgres>, DbError> {
    let mut tx = begin_as_sealer(pool).await?;
    pool.statements
        .query("SELECT set_config('idle_in_transaction_session_timeout', '10min', true)")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// The verdict on one tenant's `links` (a whole chain from `(1, GENESIS)`, or a part of one from
/// its first entry), with the database's checkpoints `stored` and the sink's `kept`.
pub(super) fn judge(
    tenant_id: TenantId,
    links: &[StoredLink],
    (first_seq, first_prev): (i64, [u8; 32]),
    stored: &[Checkpoint],
    kept: &[Checkpoint],
    keys: &[AuditPublicKey],
) -> TenantVerdict {
    let chain: Vec<Link> = links.iter().map(|l| l.link.clone()).collect();
    let mut found = breaks_after(&chain, first_seq, first_prev);
    found.extend(checkpoint_breaks(&chain, stored, kept, keys));
    found.sort_by_key(|b| b.seq);
    let checkpoint = vouched_head(&chain, stored.iter().chain(kept), keys);
    TenantVerdict {
        tenant_id,
        chained: chain.len() as u64,
        head: chain.last().map(|l| l.seq),
        unsealed: 0,
        checkpoint,
        late: links.iter().filter(|l| l.is_late()).count() as u64,
        breaks: found,
    }
}

/// Which places of a chain to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRange {
    /// First place (inclusive).
    pub from: i64,
    /// Last place (inclusive).
    pub to: i64,
}

impl SeqRange {
    /// The whole chain.
    pub const ALL: SeqRange = SeqRange { from: 1, to: i64::MAX };
}

/// A chain entry as read, with the row it names (the times kept for the export).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StoredLink {
    pub(super) link: Link,
    pub(super) row: Option<CanonicalRow>,
}

impl StoredLink {
    /// Sealed more than [`LATE_AFTER_SECONDS`] after its row's `created_at`.
    fn is_late(&self) -> bool {
        self.row.as_ref().is_some_and(|r| {
            self.link.sealed_at_micros.saturating_sub(r.created_at_micros) > LATE_AFTER_SECONDS * 1_000_000
        })
    }
}

/// The entries of `tenant`'s chain in `range`, with their rows, by sequence number.
pub(super) async fn read_links(
    pool: &PlatformPool,
    conn: &mut PgConnection,
    tenant: TenantId,
    range: SeqRange,
) -> Result<Vec<StoredLink>, sqlx::Error> {
    let rows = pool
        .statements
        .query(
            // Times outside the CHECK's range (an owner's rewrite) read as NULL rather than
            // failing the decoder, which panics far enough out: they make an altered row. The row
            // is fetched by a LATERAL lookup of its primary key (LIMIT keeps it from becoming a
            // join): right after a bulk insert, stale statistics made the planner join with a
            // sequential scan per entry, and 100,000 entries ran past the statement timeout.
            "SELECT c.seq, c.prev_hash, c.hash, a.id IS NOT NULL AS present, a.id, \
                    CASE WHEN c.sealed_at BETWEEN '1970-01-01Z' AND '9999-12-31Z' THEN c.sealed_at END AS sealed_at, \
                    CASE WHEN a.created_at BETWEEN '1970-01-01Z' AND '9999-12-31Z' THEN a.created_at END AS created_at, \
                    a.user_id, a.action::text AS action, a.resource_type::text AS resource_type, a.resource_id, \
                    a.ip_address::text AS ip_address, a.user_agent, a.metadata::text AS metadata \
             FROM audit_chain c \
             LEFT JOIN LATERAL (SELECT * FROM audit_logs l WHERE l.id = c.audit_id AND l.tenant_id = c.tenant_id LIMIT 1) a \
                 ON true \
             WHERE c.tenant_id = $1 AND c.seq BETWEEN $2 AND $3 ORDER BY c.seq",
        )
        .bind(tenant)
        .bind(range.from)
        .bind(range.to)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(|row| stored_link(tenant, row)).collect()
}

/// The database's checkpoints of `tenant` in `range`, by sequence number.
pub(super) async fn read_checkpoints(
    pool: &PlatformPool,
    conn: &mut PgConnection,
    tenant: TenantId,
    range: SeqRange,
) -> Result<Vec<Checkpoint>, sqlx::Error> {
    pool.statements
        .query("SELECT * FROM audit_checkpoints WHERE tenant_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq")
        .bind(tenant)
        .bind(range.from)
        .bind(range.to)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(checkpoint_from_row)
        .collect()
}

/// A time as microseconds since 1970; a time no real row has (`i64::MIN`) when the database's is
/// out of range: it matches no hash.
fn micros(time: Option<DateTime<Utc>>) -> i64 {
    time.map_or(i64::MIN, |t| t.timestamp_micros())
}

fn stored_link(tenant_id: TenantId, row: &PgRow) -> Result<StoredLink, sqlx::Error> {
    let hash = |column: &str| -> Result<[u8; 32], sqlx::Error> {
        let bytes: Vec<u8> = row.try_get(column)?;
        // The table's CHECK keeps hashes at 32 bytes; one that is not (the check dropped) can
        // match nothing, so all-ones stands for it.
        Ok(<[u8; 32]>::try_from(bytes.as_slice()).unwrap_or([0xff; 32]))
    };
    let stored = if row.try_get::<bool, _>("present")? {
        Some(CanonicalRow {
            tenant_id: tenant_id.as_uuid(),
            id: row.try_get("id")?,
            created_at_micros: micros(row.try_get("created_at")?),
            user_id: row.try_get("user_id")?,
            action: row.try_get("action")?,
            resource_type: row.try_get("resource_type")?,
            resource_id: row.try_get("resource_id")?,
            ip_address: row.try_get("ip_address")?,
            user_agent: row.try_get("user_agent")?,
            metadata: row.try_get("metadata")?,
        })
    } else {
        None
    };
    let sealed_at = micros(row.try_get("sealed_at")?);
    let link = Link::new(row.try_get("seq")?, sealed_at, hash("prev_hash")?, hash("hash")?, stored.clone());
    Ok(StoredLink { link, row: stored })
}
