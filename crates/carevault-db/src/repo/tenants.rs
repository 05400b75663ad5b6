use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row};

use crate::domain::{AuditAction, BoundedText, Cursor, Deleted, EmailDomain, Page, PageLimit, TenantId, TenantStatus};
use crate::{DbError, PlatformTx};

/// A tenant (one customer organisation).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tenant {
    /// Id.
    pub id: TenantId,
    /// Name.
    pub name: String,
    /// Status; only `active` and `trial` tenants may use the API.
    pub status: TenantStatus,
    /// The tenant's KMS key, for a later encryption issue.
    pub kms_key_arn: Option<String>,
    /// The email domains whose users may sign up just in time (`JIT_PROVISIONING=domains`),
    /// sorted; empty: nobody.
    pub jit_email_domains: Vec<EmailDomain>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed (maintained by a trigger).
    pub updated_at: DateTime<Utc>,
    /// Soft-deleted at, if deleted.
    pub deleted_at: Option<DateTime<Utc>>,
}

impl Tenant {
    /// Whether the tenant is soft-deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }

    /// Whether the tenant's users may use the service: not deleted, and active or on trial.
    pub fn is_active(&self) -> bool {
        !self.is_deleted() && self.status.allows_access()
    }
}

impl<'r> FromRow<'r, PgRow> for Tenant {
    fn from_row(row: &'r PgRow) -> Result<Tenant, sqlx::Error> {
        let status: String = row.try_get("status")?;
        Ok(Tenant {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            status: TenantStatus::parse(&status).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            kms_key_arn: row.try_get("kms_key_arn")?,
            jit_email_domains: row
                .try_get::<Vec<String>, _>("jit_email_domains")?
                .iter()
                .map(|d| EmailDomain::parse(d))
                .collect::<Result<_, _>>()
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            deleted_at: row.try_get("deleted_at")?,
        })
    }
}

/// Every tenant, for the platform path only. Each change is audited in the affected tenant's
/// audit log, with no user and `metadata.actor = "platform"`.
#[derive(Debug)]
pub struct Tenants<'t> {
    pub(crate) tx: &'t mut PlatformTx,
}

impl PlatformTx {
    /// The tenants repository.
    pub fn tenants(&mut self) -> Tenants<'_> {
        Tenants { tx: self }
    }
}

impl Tenants<'_> {
    /// Creates a tenant (audited `tenant.created`).
    #[tracing::instrument(skip_all)]
    pub async fn create(&mut self, name: BoundedText, status: TenantStatus) -> Result<Tenant, DbError> {
        let tenant: Tenant = self
            .tx
            .sql()
            .query_as(concat!("INSERT INTO tenants (name, status) VALUES ($1, $2) RETURNING ", tenant_columns!()))
            .bind(name.as_str())
            .bind(status.as_str())
            .fetch_one(self.tx.conn())
            .await?;
        self.tx.audit(tenant.id, AuditAction::TenantCreated, json!({})).await?;
        Ok(tenant)
    }

    /// A tenant, deleted or not.
    pub async fn get(&mut self, id: TenantId) -> Result<Tenant, DbError> {
        let tenant: Option<Tenant> = self
            .tx
            .sql()
            .query_as(concat!("SELECT ", tenant_columns!(), " FROM tenants WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.tx.conn())
            .await?;
        tenant.ok_or(DbError::NotFound)
    }

    /// Every tenant's id and whether it is soft-deleted, for maintenance (the search indexes):
    /// ids only, not audited.
    pub async fn all_ids(&mut self) -> Result<Vec<(TenantId, bool)>, DbError> {
        Ok(self
            .tx
            .sql()
            .query_as("SELECT id, deleted_at IS NOT NULL FROM tenants ORDER BY id")
            .fetch_all(self.tx.conn())
            .await?)
    }

    /// A page of tenants, newest first.
    pub async fn list(
        &mut self,
        deleted: Deleted,
        limit: PageLimit,
        after: Option<Cursor>,
    ) -> Result<Page<Tenant>, DbError> {
        let rows: Vec<Tenant> = self
            .tx
            .sql()
            .query_as(concat!(
                "SELECT ",
                tenant_columns!(),
                " FROM tenants \
             WHERE CASE $1::int WHEN 0 THEN deleted_at IS NULL WHEN 1 THEN deleted_at IS NOT NULL ELSE true END \
               AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3)) \
             ORDER BY created_at DESC, id DESC LIMIT $4"
            ))
            .bind(deleted.code())
            .bind(after.map(|c| c.created_at))
            .bind(after.map(|c| c.id))
            .bind(i64::from(limit.get()) + 1)
            .fetch_all(self.tx.conn())
            .await?;
        Ok(super::into_page(rows, limit, |t| Cursor { created_at: t.created_at, id: t.id.as_uuid() }))
    }

    /// Suspends a tenant that is not deleted (audited `tenant.suspended`).
    pub async fn suspend(&mut self, id: TenantId) -> Result<Tenant, DbError> {
        self.set_status(id, TenantStatus::Suspended, AuditAction::TenantSuspended).await
    }

    /// Activates a tenant that is not deleted (audited `tenant.activated`).
    pub async fn activate(&mut self, id: TenantId) -> Result<Tenant, DbError> {
        self.set_status(id, TenantStatus::Active, AuditAction::TenantActivated).await
    }

    async fn set_status(&mut self, id: TenantId, status: TenantStatus, action: AuditAction) -> Result<Tenant, DbError> {
        refuse_system(id)?;
        let tenant: Option<Tenant> = self
            .tx
            .sql()
            .query_as(concat!(
                "UPDATE tenants SET status = $2 WHERE id = $1 AND deleted_at IS NULL RETURNING ",
                tenant_columns!()
            ))
            .bind(id)
            .bind(status.as_str())
            .fetch_optional(self.tx.conn())
            .await?;
        let tenant = tenant.ok_or(DbError::NotFound)?;
        self.tx.audit(id, action, json!({ "status": status.as_str() })).await?;
        Ok(tenant)
    }

    /// Replaces the email domains whose users may sign up just in time (audited
    /// `tenant.updated`, naming the new list). A deleted tenant is not found.
    pub async fn set_jit_email_domains(&mut self, id: TenantId, domains: &[EmailDomain]) -> Result<Tenant, DbError> {
        let texts: Vec<&str> = domains.iter().map(EmailDomain::as_str).collect();
        let tenant: Option<Tenant> = self
            .tx
            .sql()
            .query_as(concat!(
                "UPDATE tenants SET jit_email_domains = $2 WHERE id = $1 AND deleted_at IS NULL RETURNING ",
                tenant_columns!()
            ))
            .bind(id)
            .bind(&texts)
            .fetch_optional(self.tx.conn())
            .await?;
        let tenant = tenant.ok_or(DbError::NotFound)?;
        self.tx.audit(id, AuditAction::TenantUpdated, json!({ "jit_email_domains": texts })).await?;
        Ok(tenant)
    }

    /// Soft-deletes a tenant (audited `tenant.deleted`). Already deleted → not found.
    pub async fn soft_delete(&mut self, id: TenantId) -> Result<Tenant, DbError> {
        refuse_system(id)?;
        let tenant: Option<Tenant> = self
            .tx
            .sql()
            .query_as(concat!(
                "UPDATE tenants SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL RETURNING ",
                tenant_columns!()
            ))
            .bind(id)
            .fetch_optional(self.tx.conn())
            .await?;
        let tenant = tenant.ok_or(DbError::NotFound)?;
        self.tx.audit(id, AuditAction::TenantDeleted, json!({})).await?;
        Ok(tenant)
    }

    /// Restores a soft-deleted tenant (audited `tenant.restored`). Not deleted → conflict.
    pub async fn restore(&mut self, id: TenantId) -> Result<Tenant, DbError> {
        let tenant: Option<Tenant> = self
            .tx
            .sql()
            .query_as(concat!(
                "UPDATE tenants SET deleted_at = NULL WHERE id = $1 AND deleted_at IS NOT NULL RETURNING ",
                tenant_columns!()
            ))
            .bind(id)
            .fetch_optional(self.tx.conn())
            .await?;
        let Some(tenant) = tenant else {
            self.get(id).await?;
            return Err(DbError::Conflict("the tenant is not deleted"));
        };
        self.tx.audit(id, AuditAction::TenantRestored, json!({})).await?;
        Ok(tenant)
    }
}

/// The seeded System tenant owns platform-level rows; suspending or deleting it would only break
/// things.
fn refuse_system(id: TenantId) -> Result<(), DbError> {
    if id == TenantId::SYSTEM {
        return Err(DbError::Conflict("the System tenant cannot be suspended or deleted"));
    }
    Ok(())
}
