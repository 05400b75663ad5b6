use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row};

use super::{Tenant, User};
use crate::domain::AuditAction;
use crate::{DbError, TenantTx, UserId};

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

    /// The tenant row and the user whose identity-provider `sub` is `external_idp_id`, active or
    /// soft-deleted (the active one first, then the newest, if a `sub` was reused after a soft
    /// delete), in one round trip; `None` when the tenant does not exist.
    ///
    /// The authentication lookup of a request: it writes no audit row.
    #[tracing::instrument(skip_all)]
    pub async fn lookup_with_user(&mut self, external_idp_id: &str) -> Result<Option<(Tenant, Option<User>)>, DbError> {
        let tenant_id = self.tx.tenant_id();
        let row: Option<PgRow> = self
            .tx
            .sql()
            .query(TENANT_WITH_USER)
            .bind(tenant_id)
            .bind(external_idp_id)
            .fetch_optional(self.tx.conn())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let tenant = Tenant::from_row(&row)?;
        let user = match row.try_get::<Option<UserId>, _>("user_id")? {
            Some(_) => Some(User::from_columns(&row, "user_")?),
            None => None,
        };
        Ok(Some((tenant, user)))
    }

    /// The tenant row (audited `tenant.read`).
    pub async fn read(&mut self) -> Result<Tenant, DbError> {
        let tenant = self.lookup().await?.ok_or(DbError::NotFound)?;
        self.tx.audit(AuditAction::TenantRead, tenant.id.as_uuid(), json!({})).await?;
        Ok(tenant)
    }
}

const TENANT_BY_ID: &str = concat!("SELECT ", tenant_columns!(), " FROM tenants WHERE id = $1");

/// The tenant and its user by `sub`. The user's columns are renamed `user_*` (in the order of
/// `user_columns!`), apart from the tenant's.
const TENANT_WITH_USER: &str = concat!(
    "SELECT ",
    tenant_columns!(),
    ", u.* FROM tenants LEFT JOIN LATERAL (SELECT ",
    user_columns!(),
    " FROM users WHERE tenant_id = $1 AND external_idp_id = $2 \
       ORDER BY deleted_at IS NULL DESC, created_at DESC LIMIT 1) \
     AS u (user_id, user_tenant_id, user_email, user_external_idp_id, user_full_name, user_role, \
           user_last_login_at, user_created_at, user_updated_at, user_deleted_at) ON true \
     WHERE tenants.id = $1"
);
