use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row};

use crate::audit_chain::Checkpoint;
use crate::domain::{AuditAction, AuditLogId, AuditResourceType, Cursor, Page, PageLimit, TenantId, UserId};
use crate::{DbError, TenantTx};

/// One audit row, as stored.
///
/// `action` and `resource_type` stay the stored text rather than [`AuditAction`] and
/// [`AuditResourceType`]: this crate writes only names of [`AuditAction::ALL`], but a row written
/// by an older or newer version, or by another tool with the INSERT grant, may hold a name this
/// version does not know, and one such row must not make the whole log unreadable. The exact
/// stored text is also what a canonical form of the row (a hash chain) must cover.
/// [`AuditEntry::known_action`] gives the typed action when there is one.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditEntry {
    /// Id.
    pub id: AuditLogId,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Acting user (`None` for system and platform actions).
    pub user_id: Option<UserId>,
    /// Action, as stored: a wire name of [`AuditAction`] for every row this crate writes.
    pub action: String,
    /// Resource type, as stored: a wire name of [`AuditResourceType`] for every row this crate
    /// writes.
    pub resource_type: String,
    /// Resource id (the tenant id for lists and searches).
    pub resource_id: uuid::Uuid,
    /// Client IP address.
    pub ip_address: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// Request id, counts, ids and field names; never PHI.
    pub metadata: Value,
    /// When: the database's clock at insertion.
    pub created_at: DateTime<Utc>,
    /// Its place in the tenant's chain; `None` until the sealer has chained it.
    pub seq: Option<i64>,
    /// Its chain hash (hex), when sealed (docs/AUDIT_FORMAT.md).
    pub hash: Option<String>,
}

impl AuditEntry {
    /// The action, if it is one this version knows (`None` for a name written by something else).
    pub fn known_action(&self) -> Option<AuditAction> {
        AuditAction::parse(&self.action).ok()
    }
}

impl<'r> FromRow<'r, PgRow> for AuditEntry {
    fn from_row(row: &'r PgRow) -> Result<AuditEntry, sqlx::Error> {
        Ok(AuditEntry {
            id: row.try_get("id")?,
            tenant_id: row.try_get("tenant_id")?,
            user_id: row.try_get("user_id")?,
            action: row.try_get("action")?,
            resource_type: row.try_get("resource_type")?,
            resource_id: row.try_get("resource_id")?,
            ip_address: row.try_get("ip_address")?,
            user_agent: row.try_get("user_agent")?,
            metadata: row.try_get::<Option<Value>, _>("metadata")?.unwrap_or_else(|| json!({})),
            created_at: row.try_get("created_at")?,
            seq: row.try_get("seq")?,
            hash: row.try_get("hash")?,
        })
    }
}

/// Filters of [`AuditLog::list`]; every field narrows the result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Exact action.
    pub action: Option<AuditAction>,
    /// Exact resource type.
    pub resource_type: Option<AuditResourceType>,
    /// Exact resource id.
    pub resource_id: Option<uuid::Uuid>,
    /// Acting user.
    pub user_id: Option<UserId>,
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Before.
    pub until: Option<DateTime<Utc>>,
}

/// The audit log of the transaction's tenant: append and list, nothing else. No function of this
/// crate updates or deletes an audit row, and the runtime role could not if one tried.
#[derive(Debug)]
pub struct AuditLog<'t> {
    pub(crate) tx: &'t mut TenantTx,
}

impl TenantTx {
    /// The audit log repository.
    pub fn audit_log(&mut self) -> AuditLog<'_> {
        AuditLog { tx: self }
    }
}

impl AuditLog<'_> {
    /// Appends a row for an action that is not a repository call, such as
    /// [`AuditAction::AccessDenied`]; the action decides the resource type. `details` must hold no
    /// PHI.
    pub async fn append(
        &mut self,
        action: AuditAction,
        resource_id: uuid::Uuid,
        details: Value,
    ) -> Result<(), DbError> {
        self.tx.audit(action, resource_id, details).await
    }

    /// The tenant's latest signed checkpoint, if there is one (itself audited `audit.read`, with
    /// the checkpoint's place).
    #[tracing::instrument(skip_all)]
    pub async fn latest_checkpoint(&mut self) -> Result<Option<Checkpoint>, DbError> {
        let tenant_id = self.tx.tenant_id();
        let row = self
            .tx
            .sql()
            .query("SELECT * FROM audit_checkpoints WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1")
            .bind(tenant_id)
            .fetch_optional(self.tx.conn())
            .await?;
        let checkpoint = row.as_ref().map(crate::audit_chain::heads::checkpoint_from_row).transpose()?;
        let seq = checkpoint.as_ref().map(|c| c.seq);
        self.tx.audit(AuditAction::AuditRead, tenant_id.as_uuid(), json!({ "checkpoint": seq })).await?;
        Ok(checkpoint)
    }

    /// A page of audit rows, newest first (itself audited `audit.read`).
    #[tracing::instrument(skip_all)]
    pub async fn list(
        &mut self,
        filter: &AuditFilter,
        limit: PageLimit,
        after: Option<Cursor>,
    ) -> Result<Page<AuditEntry>, DbError> {
        let tenant_id = self.tx.tenant_id();
        let rows: Vec<AuditEntry> = self
            .tx
            .sql()
            .query_as(
                "SELECT a.id, a.tenant_id, a.user_id, a.action, a.resource_type, a.resource_id, \
                    host(a.ip_address) AS ip_address, a.user_agent, a.metadata, a.created_at, \
                    c.seq, encode(c.hash, 'hex') AS hash \
             FROM audit_logs a \
             LEFT JOIN audit_chain c ON c.tenant_id = a.tenant_id AND c.audit_id = a.id \
             WHERE a.tenant_id = $1 \
               AND ($2::text IS NULL OR a.action = $2) \
               AND ($3::text IS NULL OR a.resource_type = $3) \
               AND ($4::uuid IS NULL OR a.resource_id = $4) \
               AND ($5::uuid IS NULL OR a.user_id = $5) \
               AND ($6::timestamptz IS NULL OR a.created_at >= $6) \
               AND ($7::timestamptz IS NULL OR a.created_at < $7) \
               AND ($8::timestamptz IS NULL OR (a.created_at, a.id) < ($8, $9)) \
             ORDER BY a.created_at DESC, a.id DESC LIMIT $10",
            )
            .bind(tenant_id)
            .bind(filter.action.map(|action| action.as_str()))
            .bind(filter.resource_type.map(|resource_type| resource_type.as_str()))
            .bind(filter.resource_id)
            .bind(filter.user_id)
            .bind(filter.since)
            .bind(filter.until)
            .bind(after.map(|c| c.created_at))
            .bind(after.map(|c| c.id))
            .bind(i64::from(limit.get()) + 1)
            .fetch_all(self.tx.conn())
            .await?;
        let page = super::into_page(rows, limit, |e| Cursor { created_at: e.created_at, id: e.id.as_uuid() });
        self.tx.audit(AuditAction::AuditRead, tenant_id.as_uuid(), json!({ "count": page.items.len() })).await?;
        Ok(page)
    }
}
