//! The tenant transaction: the only door to tenant tables, and the whole RLS protocol in one file.
//!
//! [`TenantTx::begin`] opens a transaction and, before anything else runs, reads the server
//! session's binding ([`Binding`]) and sends the proof of the tenant context in one statement:
//!
//! ```sql
//! SELECT set_config('role', 'carevault_app', true),               -- SET LOCAL ROLE
//!        set_config('app.tenant_context', '<proof>', true),
//!        set_config('lock_timeout', '5s', true)
//! ```
//!
//! * The proof ([`crate::tenant_context`]) names the tenant and the acting user, and is bound to
//!   this server session and transaction: the policies' function `carevault_current_tenant()`
//!   returns the tenant only when it verifies, so a session that sets the setting by itself (it
//!   can) sees nothing.
//! * `set_config(..., true)` is transaction-local: at COMMIT or ROLLBACK all three revert, so
//!   nothing leaks to the next user of a pooled connection, and it works behind PgBouncer in
//!   transaction mode. (The reference used `SET LOCAL app.current_tenant_id = $1`, which is a
//!   syntax error: `SET` takes no bind parameters.)
//! * Switching to `carevault_app` makes RLS apply even when the pool logs in as a superuser or
//!   the table owner: the policies are `TO carevault_app`, and `carevault_app` is neither
//!   superuser, BYPASSRLS nor owner.
//! * The pool's `after_release` hook ([`crate::AppPool`]) re-checks that the role and the setting
//!   are gone, and closes the connection otherwise.
//!
//! Every repository method writes its audit row through [`TenantTx::audit`] on the same
//! transaction, so an action without its audit row cannot commit. The SQL executor is private:
//! code outside this crate can only call the repositories.

use serde_json::{Map, Value, json};
use sqlx::{PgConnection, Postgres, Transaction};

use crate::domain::{AuditAction, AuditContext, TenantId};
use crate::pool::Statements;
use crate::tenant_context::{Binding, TenantContextKey, expiry_from_now};
use crate::{AppPool, DbError, UserId};

/// A transaction bound to one tenant, running as `carevault_app`.
///
/// Dropping it without [`TenantTx::commit`] rolls everything back, audit rows included.
///
/// ```no_run
/// # async fn example(pool: &carevault_db::AppPool, tenant: carevault_db::TenantId) -> Result<(), carevault_db::DbError> {
/// use carevault_db::{AuditContext, Deleted, PageLimit, TenantTx};
///
/// let mut tx = TenantTx::begin(pool, tenant, AuditContext::default()).await?;
/// let page = tx.users().list(Deleted::Exclude, PageLimit::default(), None).await?;
/// tx.commit().await?; // the `user.listed` audit row commits with the read
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TenantTx {
    tx: Transaction<'static, Postgres>,
    tenant_id: TenantId,
    context: AuditContext,
    statements: Statements,
    key: std::sync::Arc<TenantContextKey>,
    binding: Binding,
}

impl TenantTx {
    /// Opens a transaction for `tenant_id`, switched to `carevault_app`, acting as
    /// `context.user_id` when it is set: the user is named in the same round trip as the tenant,
    /// so a caller that already knows who is acting needs no [`TenantTx::set_user`].
    ///
    /// An unknown tenant is not an error here: RLS then shows nothing (callers that must reject
    /// unknown tenants check [`crate::repo::CurrentTenant::lookup`]).
    #[tracing::instrument(skip_all, fields(tenant_id = %tenant_id))]
    pub async fn begin(pool: &AppPool, tenant_id: TenantId, context: AuditContext) -> Result<TenantTx, DbError> {
        let mut tx = pool.pool.begin().await.map_err(|error| crate::pool::acquire_error(&pool.pool, error))?;
        let binding = Binding::read(&mut tx, pool.binding).await?;
        let mut tenant_tx =
            TenantTx { tx, tenant_id, context, statements: pool.statements, key: pool.key.clone(), binding };
        tenant_tx.enter().await?;
        Ok(tenant_tx)
    }

    /// Switches to `carevault_app` and proves the tenant context of `self.context.user_id`.
    async fn enter(&mut self) -> Result<(), DbError> {
        let proof = self.key.prove(self.tenant_id, self.context.user_id, &self.binding, expiry_from_now());
        // lock_timeout: a session holding a table lock (any role with UPDATE can LOCK TABLE)
        // must make requests fail fast, not pile up behind it.
        self.statements
            .query(
                "SELECT set_config('role', 'carevault_app', true), \
                    set_config('app.tenant_context', $1, true), \
                    set_config('lock_timeout', '5s', true)",
            )
            .bind(proof)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// The tenant this transaction is bound to.
    pub fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }

    /// Who is acting.
    pub fn context(&self) -> &AuditContext {
        &self.context
    }

    /// Names the acting user once authentication has resolved it inside this transaction, for the
    /// rest of it: the user of the proof and the `user_id` of every later audit row.
    pub async fn set_user(&mut self, user_id: UserId) -> Result<(), DbError> {
        self.context.user_id = Some(user_id);
        self.enter().await
    }

    /// The applied migration version and pgvector's version (for [`AppPool::schema_state`]).
    pub(crate) async fn schema_versions(&mut self) -> Result<(Option<i64>, Option<String>), DbError> {
        Ok(self
            .statements
            .query_as(
                "SELECT (SELECT max(version) FROM _sqlx_migrations WHERE success), \
                    (SELECT extversion::text FROM pg_catalog.pg_extension WHERE extname = 'vector')",
            )
            .fetch_one(&mut *self.tx)
            .await?)
    }

    /// Whether the database accepted this transaction's proof (for [`AppPool::schema_state`]).
    pub(crate) async fn context_is_verified(&mut self) -> Result<bool, DbError> {
        Ok(self
            .statements
            .query_scalar("SELECT public.carevault_current_tenant() IS NOT NULL")
            .fetch_one(&mut *self.tx)
            .await?)
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

    /// The pool's statement mode, for the repositories of this crate only.
    pub(crate) fn sql(&self) -> Statements {
        self.statements
    }

    /// The connection, for the repositories of this crate only.
    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Appends an audit row for this tenant, on this transaction; the action decides the
    /// resource type.
    ///
    /// `details` must hold no PHI: ids, counts and field *names* only. The request id is added.
    pub(crate) async fn audit(
        &mut self,
        action: AuditAction,
        resource_id: uuid::Uuid,
        details: Value,
    ) -> Result<(), DbError> {
        let metadata = audit_metadata(&self.context, details);
        insert_audit_row(self.statements, &mut self.tx, self.tenant_id, &self.context, action, resource_id, metadata)
            .await
    }
}

/// Inserts one audit row; the only INSERT INTO audit_logs of the crate (tenant and platform paths).
///
/// `action` and `resource_type` are stored as the action's wire names
/// ([`AuditAction::as_str`], [`crate::AuditResourceType::as_str`]), never as caller text.
pub(crate) async fn insert_audit_row(
    statements: Statements,
    conn: &mut PgConnection,
    tenant_id: TenantId,
    context: &AuditContext,
    action: AuditAction,
    resource_id: uuid::Uuid,
    metadata: Value,
) -> Result<(), DbError> {
    statements.query(
        "INSERT INTO audit_logs (tenant_id, user_id, action, resource_type, resource_id, ip_address, user_agent, metadata) \
         VALUES ($1, $2, $3, $4, $5, $6::inet, $7, $8)",
    )
    .bind(tenant_id)
    .bind(context.user_id)
    .bind(action.as_str())
    .bind(action.resource_type().as_str())
    .bind(resource_id)
    .bind(context.ip_address.map(|ip| ip.to_string()))
    .bind(context.user_agent.as_deref().map(truncate_user_agent))
    .bind(metadata)
    .execute(conn)
    .await?;
    Ok(())
}

/// The audit metadata: `details` plus the request id.
pub(crate) fn audit_metadata(context: &AuditContext, details: Value) -> Value {
    let mut metadata = match details {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        other => Map::from_iter([("details".to_string(), other)]),
    };
    if let Some(request_id) = &context.request_id {
        metadata.insert("request_id".into(), json!(request_id));
    }
    Value::Object(metadata)
}

/// User agents are attacker-controlled; keep at most 512 characters.
fn truncate_user_agent(agent: &str) -> String {
    agent.chars().take(512).collect()
}
