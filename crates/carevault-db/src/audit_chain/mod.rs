//! The audit chain: every audit row, once committed, is appended to its tenant's hash chain by
//! the sealer; signed checkpoints of each chain's head are kept in the database and in a sink
//! outside it; and anyone with the platform login and the public key can check the chain.
//!
//! Design (docs/ARCHITECTURE.md, "The audit chain"): rows are chained after commit, in the
//! append-only table `audit_chain`, whose trigger computes each entry's sequence number and hash
//! from the stored row (migration 19); the format is `docs/AUDIT_FORMAT.md`, implemented here
//! in [`row_hash`] and in the database's `audit_row_hash`, which the test suite compares. The
//! sealer and the verifier run as `carevault_sealer`, reached through the platform login.

/// The audit row `a` has no chain entry yet. A scalar sub-select, one index lookup per row,
/// rather than NOT EXISTS, which the planner may turn into a join planned on stale statistics:
/// right after a bulk insert, such a join ran a sequential scan per row past the statement timeout.
macro_rules! not_chained {
    () => {
        "(SELECT 1 FROM audit_chain c WHERE c.tenant_id = a.tenant_id AND c.audit_id = a.id) IS NULL"
    };
}

/// The audit row `a` belongs to a transaction the snapshot `$snapshot` (an SQL expression) did not
/// see finished: one running then, or started since. Two index lookups on `xact_id`.
macro_rules! not_seen_finished {
    ($snapshot:literal) => {
        concat!(
            "(a.xact_id >= pg_snapshot_xmax(",
            $snapshot,
            ") OR a.xact_id = ANY (ARRAY(SELECT pg_snapshot_xip(",
            $snapshot,
            "))))"
        )
    };
}

mod canonical;
mod check;
mod checkpoint;
mod export;
pub(crate) mod heads;
mod seal;
mod sink;
mod verify;

pub use canonical::{CanonicalRow, FORMAT_TAG, GENESIS, row_hash};
pub use check::{Break, BreakKind, Link, RowState, breaks, breaks_after, checkpoint_breaks, vouched_head};
pub use checkpoint::{AuditKeyError, AuditPublicKey, AuditSigningKey, CHECKPOINT_TAG, Checkpoint};
pub use export::{ExportEntry, ExportError, ExportLine, export, parse_export, verify_export};
pub use heads::latest_checkpoints;
pub use seal::{MAX_SEAL_BATCH, Sealed, SealerLag, lag, seal};
pub use sink::{CheckpointSink, SinkError};
pub use verify::{LATE_AFTER_SECONDS, SeqRange, TenantVerdict, Trust, VerifyError, verify};

use sqlx::{Postgres, Transaction};

use crate::{DbError, PlatformPool};

/// The sealer's and the verifier's transaction: one snapshot for the whole pass (REPEATABLE
/// READ), so that what it sees and the watermark it records belong together.
async fn begin_as_sealer(pool: &PlatformPool) -> Result<Transaction<'static, Postgres>, DbError> {
    let mut tx = pool
        .pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ WRITE")
        .await
        .map_err(|error| crate::pool::acquire_error(&pool.pool, error))?;
    pool.statements
        .query("SELECT set_config('role', 'carevault_sealer', true), public.carevault_pin_transaction($1)")
        .bind(&pool.statement_timeout)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}
