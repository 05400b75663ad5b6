//! Checking the live chain: each tenant's entries against the rows they name, and the rows the
//! sealer should have chained.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::begin_as_sealer;
use super::canonical::CanonicalRow;
use super::check::{Break, BreakKind, Link, breaks};
use crate::domain::TenantId;
use crate::{DbError, PlatformPool};

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
    /// Every break, in sequence order.
    pub breaks: Vec<Break>,
}

impl TenantVerdict {
    /// No break.
    pub fn intact(&self) -> bool {
        self.breaks.is_empty()
    }
}

/// Checks the chain of `tenant`, or of every tenant with audit rows or chain entries, in one
/// snapshot, as `carevault_sealer` (read only).
pub async fn verify(pool: &PlatformPool, tenant: Option<TenantId>) -> Result<Vec<TenantVerdict>, DbError> {
    let mut tx = begin_as_sealer(pool).await?;
    let tenants: Vec<TenantId> = match tenant {
        Some(tenant) => vec![tenant],
        None => {
            pool.statements
                .query_scalar("SELECT tenant_id FROM audit_logs UNION SELECT tenant_id FROM audit_chain ORDER BY 1")
                .fetch_all(&mut *tx)
                .await?
        }
    };
    let watermark: String =
        pool.statements.query_scalar("SELECT watermark::text FROM audit_sealer").fetch_one(&mut *tx).await?;
    let mut verdicts = Vec::with_capacity(tenants.len());
    for tenant_id in tenants {
        let rows = pool
            .statements
            .query(
                "SELECT c.seq, c.prev_hash, c.hash, a.id IS NOT NULL AS present, a.id, a.created_at, a.user_id, \
                        a.action::text AS action, a.resource_type::text AS resource_type, a.resource_id, \
                        a.ip_address::text AS ip_address, a.user_agent, a.metadata::text AS metadata \
                 FROM audit_chain c LEFT JOIN audit_logs a ON a.tenant_id = c.tenant_id AND a.id = c.audit_id \
                 WHERE c.tenant_id = $1 ORDER BY c.seq",
            )
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?;
        let links = rows.iter().map(|row| link(tenant_id, row)).collect::<Result<Vec<Link>, sqlx::Error>>()?;
        let mut found = breaks(&links);
        let head = links.last().map(|l| l.seq);
        // A row of a transaction below the watermark was visible to a completed pass: unchained,
        // it was put there behind the sealer's back.
        let (behind, unsealed): (i64, i64) = pool
            .statements
            .query_as(
                "SELECT count(*) FILTER (WHERE a.xact_id < $2::xid8), count(*) FILTER (WHERE a.xact_id >= $2::xid8) \
                 FROM audit_logs a WHERE a.tenant_id = $1 \
                   AND NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.tenant_id = a.tenant_id AND c.audit_id = a.id)",
            )
            .bind(tenant_id)
            .bind(&watermark)
            .fetch_one(&mut *tx)
            .await?;
        if behind > 0 {
            found.push(Break { seq: head.unwrap_or(0) + 1, kind: BreakKind::InsertedRow });
        }
        verdicts.push(TenantVerdict {
            tenant_id,
            chained: links.len() as u64,
            head,
            unsealed: unsealed as u64,
            breaks: found,
        });
    }
    tx.rollback().await?;
    Ok(verdicts)
}

fn link(tenant_id: TenantId, row: &PgRow) -> Result<Link, sqlx::Error> {
    let hash = |column: &str| -> Result<[u8; 32], sqlx::Error> {
        let bytes: Vec<u8> = row.try_get(column)?;
        // The table's CHECK keeps hashes at 32 bytes; one that is not (the check dropped) can
        // match nothing, so all-ones stands for it.
        Ok(<[u8; 32]>::try_from(bytes.as_slice()).unwrap_or([0xff; 32]))
    };
    let stored = if row.try_get::<bool, _>("present")? {
        let created_at: DateTime<Utc> = row.try_get("created_at")?;
        Some(CanonicalRow {
            tenant_id: tenant_id.as_uuid(),
            id: row.try_get("id")?,
            created_at_micros: created_at.timestamp_micros(),
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
    Ok(Link::new(row.try_get("seq")?, hash("prev_hash")?, hash("hash")?, stored))
}
