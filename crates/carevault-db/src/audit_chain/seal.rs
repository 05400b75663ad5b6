//! The sealer: one pass appends every committed, unchained audit row to its tenant's chain.

use sqlx::Row;

use super::begin_as_sealer;
use super::checkpoint::AuditSigningKey;
use super::heads::sign_moved_heads;
use crate::{DbError, PlatformPool};

/// The most rows one pass chains; a pass that reaches it leaves its watermark where it was, and
/// the next pass goes on from there.
pub const MAX_SEAL_BATCH: i64 = 50_000;

/// What a pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed {
    /// It chained `chained` rows and signed `checkpointed` checkpoints (0 when there was nothing
    /// to do).
    Done {
        /// Rows appended to their chains.
        chained: u64,
        /// Checkpoints signed and stored in the database.
        checkpointed: u64,
    },
    /// Another sealer holds the lock, or finished a pass while this one started: nothing done.
    Busy,
}

/// Runs one pass, in one transaction as `carevault_sealer`:
///
/// 1. lock the sealer's row (`NOWAIT`: one sealer at a time across replicas; a second one
///    returns [`Sealed::Busy`] rather than waiting);
/// 2. append, in (tenant, `created_at`, id) order, every visible row without a chain entry of a
///    transaction the watermark (the last complete pass's snapshot) did not see finished: one
///    running then (its `xip` list) or started since (at or after its `xmax`). The trigger of
///    `audit_chain` numbers and hashes each;
/// 3. make this pass's snapshot the watermark: every transaction it saw finished had its rows
///    visible, and they are now chained. A row committed later by a long transaction belongs to
///    one it saw running, so a later pass finds it (by its id, however old it is) and chains it
///    after the rows already sealed;
/// 4. with `sign_with`, sign a checkpoint of every tenant's head that moved since its last one,
///    and store it (the caller then copies the latest ones to its sink:
///    [`super::latest_checkpoints`]).
pub async fn seal(pool: &PlatformPool, sign_with: Option<&AuditSigningKey>) -> Result<Sealed, DbError> {
    let mut tx = begin_as_sealer(pool).await?;
    let locked = pool
        .statements
        .query(
            "SELECT watermark::text AS watermark, pg_current_snapshot()::text AS next \
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
        .query(concat!(
            "INSERT INTO audit_chain (tenant_id, audit_id) SELECT a.tenant_id, a.id FROM audit_logs a WHERE ",
            not_seen_finished!("$1::pg_snapshot"),
            " AND ",
            not_chained!(),
            " ORDER BY a.tenant_id, a.created_at, a.id LIMIT $2"
        ))
        .bind(&watermark)
        .bind(MAX_SEAL_BATCH)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    // Written even when unchanged (a pass that reached the cap): a pass that took its snapshot
    // before this one commits then fails its lock with 40001 (Busy) instead of appending again.
    let watermark = if chained < MAX_SEAL_BATCH as u64 { next } else { watermark };
    pool.statements
        .query("UPDATE audit_sealer SET watermark = $1::pg_snapshot")
        .bind(&watermark)
        .execute(&mut *tx)
        .await?;
    let checkpointed = match sign_with {
        Some(key) => sign_moved_heads(pool.statements, &mut tx, key).await?,
        None => 0,
    };
    tx.commit().await?;
    Ok(Sealed::Done { chained, checkpointed })
}

/// How far the sealer is behind: the committed rows it has not chained yet, and the entries no
/// signed checkpoint covers yet.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SealerLag {
    /// Rows not chained yet.
    pub unsealed: u64,
    /// Seconds since the oldest of them was inserted (`None` when there is none).
    pub oldest_seconds: Option<f64>,
    /// Seconds since the oldest entry that no checkpoint covers was sealed (`None` when every
    /// tenant's head is signed).
    pub unsigned_seconds: Option<f64>,
}

/// Reads [`SealerLag`] as `carevault_sealer` (read only).
pub async fn lag(pool: &PlatformPool) -> Result<SealerLag, DbError> {
    let mut tx = begin_as_sealer(pool).await?;
    let (unsealed, oldest_seconds): (i64, Option<f64>) = pool
        .statements
        .query_as(concat!(
            "SELECT count(*), extract(epoch FROM clock_timestamp() - min(a.created_at))::float8 \
                 FROM audit_logs a WHERE ",
            not_seen_finished!("(SELECT watermark FROM audit_sealer)"),
            " AND ",
            not_chained!()
        ))
        .fetch_one(&mut *tx)
        .await?;
    let unsigned_seconds = super::heads::unsigned_seconds(pool.statements, &mut tx).await?;
    tx.rollback().await?;
    Ok(SealerLag { unsealed: unsealed as u64, oldest_seconds, unsigned_seconds })
}
