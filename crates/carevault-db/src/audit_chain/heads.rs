//! The chains' heads and their signed checkpoints in the database: signing the heads that moved,
//! the latest checkpoint of every tenant, and how long the newest entries have gone unsigned.

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::begin_as_sealer;
use super::checkpoint::{AuditSigningKey, Checkpoint};
use crate::domain::TenantId;
use crate::pool::Statements;
use crate::{DbError, PlatformPool};

/// `WITH RECURSIVE tenants AS (...)`: every tenant of a table whose primary key leads with
/// `tenant_id`, found by a loose index scan (one descent per tenant, not a scan of every row);
/// the last row of `tenants` is NULL.
macro_rules! tenants_of {
    ($table:literal) => {
        concat!(
            "WITH RECURSIVE tenants AS ((SELECT tenant_id FROM ",
            $table,
            " ORDER BY tenant_id LIMIT 1) UNION ALL SELECT (SELECT x.tenant_id FROM ",
            $table,
            " x WHERE x.tenant_id > t.tenant_id ORDER BY x.tenant_id LIMIT 1) \
             FROM tenants t WHERE t.tenant_id IS NOT NULL) "
        )
    };
}

/// Signs and stores a checkpoint of every tenant's head that moved since its last checkpoint.
pub(super) async fn sign_moved_heads(
    statements: Statements,
    conn: &mut PgConnection,
    key: &AuditSigningKey,
) -> Result<u64, DbError> {
    let heads: Vec<(TenantId, i64, Vec<u8>)> = statements
        // Every tenant's head, where it moved since the last checkpoint.
        .query_as(concat!(
            tenants_of!("audit_chain"),
            "SELECT h.tenant_id, h.seq, h.hash FROM tenants t \
             CROSS JOIN LATERAL (SELECT c.tenant_id, c.seq, c.hash FROM audit_chain c \
                                 WHERE c.tenant_id = t.tenant_id ORDER BY c.seq DESC LIMIT 1) h \
             WHERE t.tenant_id IS NOT NULL \
               AND h.seq > coalesce((SELECT max(k.seq) FROM audit_checkpoints k WHERE k.tenant_id = h.tenant_id), 0)"
        ))
        .fetch_all(&mut *conn)
        .await?;
    let checkpoints: Vec<Checkpoint> = heads
        .iter()
        .map(|(tenant, seq, hash)| {
            let hash = <[u8; 32]>::try_from(hash.as_slice()).unwrap_or([0xff; 32]);
            Checkpoint::sign(key, *tenant, *seq, &hash)
        })
        .collect();
    if checkpoints.is_empty() {
        return Ok(0);
    }
    let bytes = |f: fn(&Checkpoint) -> Vec<u8>| checkpoints.iter().map(f).collect::<Vec<Vec<u8>>>();
    statements
        .query(
            "INSERT INTO audit_checkpoints (tenant_id, seq, head_hash, signed_at, key_id, signature) \
             SELECT * FROM unnest($1::uuid[], $2::int8[], $3::bytea[], $4::timestamptz[], $5::text[], $6::bytea[])",
        )
        .bind(checkpoints.iter().map(|c| c.tenant_id).collect::<Vec<_>>())
        .bind(checkpoints.iter().map(|c| c.seq).collect::<Vec<_>>())
        .bind(bytes(|c| c.head_hash_bytes().to_vec()))
        .bind(checkpoints.iter().map(|c| c.signed_at).collect::<Vec<_>>())
        .bind(checkpoints.iter().map(|c| c.key_id.clone()).collect::<Vec<_>>())
        .bind(bytes(|c| crate::hex::decode::<64>(&c.signature).map_or_else(Vec::new, |s| s.to_vec())))
        .execute(&mut *conn)
        .await?;
    Ok(checkpoints.len() as u64)
}

/// The latest checkpoint of every tenant that has one, as the database holds them.
pub async fn latest_checkpoints(pool: &PlatformPool) -> Result<Vec<Checkpoint>, DbError> {
    let mut tx = begin_as_sealer(pool).await?;
    let rows = pool
        .statements
        .query(concat!(
            tenants_of!("audit_checkpoints"),
            "SELECT k.* FROM tenants t \
             CROSS JOIN LATERAL (SELECT * FROM audit_checkpoints k WHERE k.tenant_id = t.tenant_id \
                                 ORDER BY k.seq DESC LIMIT 1) k \
             WHERE t.tenant_id IS NOT NULL"
        ))
        .fetch_all(&mut *tx)
        .await?;
    tx.rollback().await?;
    Ok(rows.iter().map(checkpoint_from_row).collect::<Result<_, _>>()?)
}

/// A row of `audit_checkpoints` (every column).
pub(crate) fn checkpoint_from_row(row: &PgRow) -> Result<Checkpoint, sqlx::Error> {
    Ok(Checkpoint {
        tenant_id: row.try_get("tenant_id")?,
        seq: row.try_get("seq")?,
        head_hash: crate::hex::encode(&row.try_get::<Vec<u8>, _>("head_hash")?),
        signed_at: row.try_get("signed_at")?,
        key_id: row.try_get("key_id")?,
        signature: crate::hex::encode(&row.try_get::<Vec<u8>, _>("signature")?),
    })
}

/// Seconds since the oldest entry that no checkpoint covers was sealed: per tenant, the entry
/// after its latest checkpoint (`None` when every head is signed).
pub(super) async fn unsigned_seconds(statements: Statements, conn: &mut PgConnection) -> Result<Option<f64>, DbError> {
    Ok(statements
        .query_scalar(concat!(
            tenants_of!("audit_chain"),
            "SELECT extract(epoch FROM clock_timestamp() - min(c.sealed_at))::float8 FROM tenants t \
             CROSS JOIN LATERAL (SELECT coalesce(max(k.seq), 0) AS seq FROM audit_checkpoints k \
                                 WHERE k.tenant_id = t.tenant_id) k \
             JOIN audit_chain c ON c.tenant_id = t.tenant_id AND c.seq = k.seq + 1 \
             WHERE t.tenant_id IS NOT NULL"
        ))
        .fetch_one(&mut *conn)
        .await?)
}
