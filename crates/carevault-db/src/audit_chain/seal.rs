//! The sealer: one pass appends every committed, unchained audit row to its tenant's chain.

use sqlx::Row;

use super::begin_as_sealer;
use crate::{DbError, PlatformPool};

/// The most rows one pass chains; a pass that reaches it leaves the watermark where it was, and
/// the next pass goes on from there.
pub const MAX_SEAL_BATCH: i64 = 50_000;

/// What a pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed {
    /// It chained this many rows (0 when there was nothing to do).
    Rows(u64),
    /// Another sealer holds the lock, or finished a pass while this one started: nothing done.
    Busy,
}

/// Runs one pass, in one transaction as `carevault_sealer`:
///
/// 1. lock the sealer's row (`NOWAIT`: one sealer at a time across replicas; a second one
///    returns [`Sealed::Busy`] rather than waiting);
/// 2. append, in (tenant, `created_at`, id) order, every visible row of a transaction at or
///    after the watermark that has no chain entry yet (the trigger of `audit_chain` numbers and
///    hashes it);
/// 3. move the watermark to the xmin of the pass's snapshot: every transaction older than that
///    had finished when the snapshot was taken, so its rows were visible and are now chained.
///    A row committed later by a long transaction belongs to a transaction at or after the
///    watermark, so a later pass finds it and chains it after the rows already sealed.
pub async fn seal(pool: &PlatformPool) -> Result<Sealed, DbError> {
    let mut tx = begin_as_sealer(pool).await?;
    let locked = pool
        .statements
        .query(
            "SELECT watermark::text AS watermark, pg_snapshot_xmin(pg_current_snapshot())::text AS next \
             FROM audit_sealer FOR UPDATE NOWAIT",
        )
        .fetch_one(&mut *tx)
        .await;
    let row = match locked {
        Ok(row) => row,
        // 55P03: another pass holds the row. 40001: one committed after this snapshot was taken.
        Err(sqlx::Error::Database(db)) if matches!(db.code().as_deref(), Some("55P03" | "40001")) => {
            return Ok(Sealed::Busy);
        }
        Err(error) => return Err(error.into()),
    };
    let (watermark, next): (String, String) = (row.try_get("watermark")?, row.try_get("next")?);
    let chained = pool
        .statements
        .query(
            "INSERT INTO audit_chain (tenant_id, audit_id) \
             SELECT a.tenant_id, a.id FROM audit_logs a \
             WHERE a.xact_id >= $1::xid8 \
               AND NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.tenant_id = a.tenant_id AND c.audit_id = a.id) \
             ORDER BY a.tenant_id, a.created_at, a.id \
             LIMIT $2",
        )
        .bind(&watermark)
        .bind(MAX_SEAL_BATCH)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if chained < MAX_SEAL_BATCH as u64 {
        pool.statements.query("UPDATE audit_sealer SET watermark = $1::xid8").bind(&next).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(Sealed::Rows(chained))
}

/// How far the sealer is behind: the committed rows it has not chained yet.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SealerLag {
    /// Rows not chained yet.
    pub unsealed: u64,
    /// Seconds since the oldest of them was inserted (`None` when there is none).
    pub oldest_seconds: Option<f64>,
}

/// Reads [`SealerLag`] as `carevault_sealer` (read only).
pub async fn lag(pool: &PlatformPool) -> Result<SealerLag, DbError> {
    let mut tx = begin_as_sealer(pool).await?;
    let (unsealed, oldest_seconds): (i64, Option<f64>) = pool
        .statements
        .query_as(
            "SELECT count(*), extract(epoch FROM clock_timestamp() - min(a.created_at))::float8 \
             FROM audit_logs a \
             WHERE a.xact_id >= (SELECT watermark FROM audit_sealer) \
               AND NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.tenant_id = a.tenant_id AND c.audit_id = a.id)",
        )
        .fetch_one(&mut *tx)
        .await?;
    tx.rollback().await?;
    Ok(SealerLag { unsealed: unsealed as u64, oldest_seconds })
}
