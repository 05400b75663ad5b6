//! The platform transaction: cross-tenant administration (tenants, maintenance).
//!
//! It switches to `carevault_platform`, whose policies allow every row of `tenants` and
//! `audit_logs` and nothing else: it cannot read users or documents. It is reachable only with a
//! [`PlatformPool`], which the tenant request path never holds.

use serde_json::{Value, json};
use sqlx::{PgConnection, Postgres, Transaction};

use crate::domain::{AuditAction, AuditContext, AuditResourceType, TenantId};
use crate::pool::Statements;
use crate::tenant_tx::{audit_metadata, insert_audit_row};
use crate::{DbError, PlatformPool};

/// A transaction running as `carevault_platform`.
#[derive(Debug)]
pub struct PlatformTx {
    tx: Transaction<'static, Postgres>,
    context: AuditContext,
    statements: Statements,
}

impl PlatformTx {
    /// Opens a platform transaction. The context's `user_id` is ignored: platform actions have
    /// no tenant user.
    pub async fn begin(pool: &PlatformPool, context: AuditContext) -> Result<PlatformTx, DbError> {
        let mut tx = pool
            .pool
            .begin_with(crate::pool::BEGIN)
            .await
            .map_err(|error| crate::pool::acquire_error(&pool.pool, error))?;
        // The settings every transaction pins as in TenantTx (lock_timeout: a held table lock
        // makes platform actions fail fast).
        pool.statements
            .query("SELECT set_config('role', 'carevault_platform', true), public.carevault_pin_transaction($1)")
            .bind(&pool.statement_timeout)
            .execute(&mut *tx)
            .await?;
        Ok(PlatformTx { tx, context: AuditContext { user_id: None, ..context }, statements: pool.statements })
    }

    /// Commits the work and its audit rows together.
    pub async fn commit(self) -> Result<(), DbError> {
        self.tx.commit().await?;
        Ok(())
    }

    /// Rolls back the work and its audit rows.
    pub async fn rollback(self) -> Result<(), DbError> {
        self.tx.rollback().await?;
        Ok(())
    }

    /// The pool's statement mode.
    pub(crate) fn sql(&self) -> Statements {
        self.statements
    }

    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Appends an audit row to `tenant_id`'s log: no user, `metadata.actor = "platform"`, and the
    /// tenant as the resource (every platform action is a tenant action).
    pub(crate) async fn audit(
        &mut self,
        tenant_id: TenantId,
        action: AuditAction,
        details: Value,
    ) -> Result<(), DbError> {
        debug_assert_eq!(action.resource_type(), AuditResourceType::Tenant, "platform actions name a tenant");
        let mut metadata = audit_metadata(&self.context, details);
        if let Value::Object(map) = &mut metadata {
            map.insert("actor".into(), json!("platform"));
        }
        insert_audit_row(self.statements, &mut self.tx, tenant_id, &self.context, action, tenant_id.as_uuid(), metadata)
            .await
    }
}
