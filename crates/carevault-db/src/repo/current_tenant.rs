use serde_json::json;

use super::Tenant;
use crate::domain::AuditAction;
use crate::{DbError, TenantTx};

/// The transaction's own tenant row (RLS shows no other).
#[derive(Debug)]
pub struct CurrentTenant<'t> {
    pub(crate) tx: &'t mut TenantTx,
}

impl TenantTx {
    /// The current tenant repository.
    pub fn tenant(&mut self) -> CurrentTenant<'_> {
        CurrentTenant { tx: self }
    }
}

impl CurrentTenant<'_> {
    /// The tenant row, deleted or not, or `None` when the tenant does not exist.
    ///
    /// An authentication lookup (is the claimed tenant real and active?): it writes no audit row.
    pub async fn lookup(&mut self) -> Result<Option<Tenant>, DbError> {
        let tenant_id = self.tx.tenant_id();
        Ok(self.tx.sql().query_as(TENANT_BY_ID).bind(tenant_id).fetch_optional(self.tx.conn()).await?)
    }

    /// The tenant row (audited `tenant.read`).
    pub async fn read(&mut self) -> Result<Tenant, DbError> {
        let tenant = self.lookup().await?.ok_or(DbError::NotFound)?;
        self.tx.audit(AuditAction::TenantRead, tenant.id.as_uuid(), json!({})).await?;
        Ok(tenant)
    }
}

const TENANT_BY_ID: &str = concat!("SELECT ", tenant_columns!(), " FROM tenants WHERE id = $1");
