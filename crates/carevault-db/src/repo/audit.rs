use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row};

use crate::domain::{AuditLogId, BoundedText, Cursor, Page, PageLimit, TenantId, UserId};
use crate::{DbError, TenantTx};

/// The audit actions (DESIGN §5.4). A fixed catalogue, so that a caller cannot invent one.
pub mod actions {
    /// A tenant was created (platform path).
    pub const TENANT_CREATED: &str = "tenant.created";
    /// A tenant was suspended (platform path).
    pub const TENANT_SUSPENDED: &str = "tenant.suspended";
    /// A tenant was activated (platform path).
    pub const TENANT_ACTIVATED: &str = "tenant.activated";
    /// A tenant was soft-deleted (platform path).
    pub const TENANT_DELETED: &str = "tenant.deleted";
    /// A tenant was restored (platform path).
    pub const TENANT_RESTORED: &str = "tenant.restored";
    /// The current tenant was read.
    pub const TENANT_READ: &str = "tenant.read";
    /// A user was created.
    pub const USER_CREATED: &str = "user.created";
    /// A user was read.
    pub const USER_READ: &str = "user.read";
    /// Users were listed.
    pub const USER_LISTED: &str = "user.listed";
    /// A user was changed.
    pub const USER_UPDATED: &str = "user.updated";
    /// A user was soft-deleted.
    pub const USER_DELETED: &str = "user.deleted";
    /// A user was restored.
    pub const USER_RESTORED: &str = "user.restored";
    /// A user was provisioned just in time from a token.
    pub const USER_PROVISIONED: &str = "user.provisioned";
    /// A user's login was recorded (`last_login_at`); not in DESIGN §5.4's list, added so that
    /// this write, too, has its audit row.
    pub const USER_LOGIN: &str = "user.login";
    /// A document was created.
    pub const DOCUMENT_CREATED: &str = "document.created";
    /// A document was read.
    pub const DOCUMENT_READ: &str = "document.read";
    /// Documents were listed.
    pub const DOCUMENT_LISTED: &str = "document.listed";
    /// A document was changed.
    pub const DOCUMENT_UPDATED: &str = "document.updated";
    /// A document was soft-deleted.
    pub const DOCUMENT_DELETED: &str = "document.deleted";
    /// A document was restored.
    pub const DOCUMENT_RESTORED: &str = "document.restored";
    /// A similarity search ran.
    pub const DOCUMENT_SEARCHED: &str = "document.searched";
    /// The audit log was read.
    pub const AUDIT_READ: &str = "audit.read";
    /// An authenticated user was refused by the role matrix.
    pub const ACCESS_DENIED: &str = "access.denied";
}

/// One audit row.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditEntry {
    /// Id.
    pub id: AuditLogId,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Acting user (`None` for system and platform actions).
    pub user_id: Option<UserId>,
    /// Action, from [`actions`].
    pub action: String,
    /// Resource type (`user`, `document`, `tenant`, `audit_log`, ...).
    pub resource_type: String,
    /// Resource id (the tenant id for lists and searches).
    pub resource_id: uuid::Uuid,
    /// Client IP address.
    pub ip_address: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// Request id, counts, ids and field names; never PHI.
    pub metadata: Value,
    /// When.
    pub created_at: DateTime<Utc>,
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
        })
    }
}

/// Filters of [`AuditLog::list`]; every field narrows the result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Exact action.
    pub action: Option<BoundedText>,
    /// Exact resource type.
    pub resource_type: Option<BoundedText>,
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
    /// [`actions::ACCESS_DENIED`]. `details` must hold no PHI.
    pub async fn append(
        &mut self,
        action: &'static str,
        resource_type: &'static str,
        resource_id: uuid::Uuid,
        details: Value,
    ) -> Result<(), DbError> {
        self.tx.audit(action, resource_type, resource_id, details).await
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
                "SELECT id, tenant_id, user_id, action, resource_type, resource_id, host(ip_address) AS ip_address, \
                    user_agent, metadata, created_at \
             FROM audit_logs \
             WHERE tenant_id = $1 \
               AND ($2::text IS NULL OR action = $2) \
               AND ($3::text IS NULL OR resource_type = $3) \
               AND ($4::uuid IS NULL OR resource_id = $4) \
               AND ($5::uuid IS NULL OR user_id = $5) \
               AND ($6::timestamptz IS NULL OR created_at >= $6) \
               AND ($7::timestamptz IS NULL OR created_at < $7) \
               AND ($8::timestamptz IS NULL OR (created_at, id) < ($8, $9)) \
             ORDER BY created_at DESC, id DESC LIMIT $10",
            )
            .bind(tenant_id)
            .bind(filter.action.as_ref().map(BoundedText::as_str))
            .bind(filter.resource_type.as_ref().map(BoundedText::as_str))
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
        self.tx
            .audit(actions::AUDIT_READ, "audit_log", tenant_id.as_uuid(), json!({ "count": page.items.len() }))
            .await?;
        Ok(page)
    }
}
