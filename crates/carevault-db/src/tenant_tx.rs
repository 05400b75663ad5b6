//! The tenant transaction: the only door to tenant tables, and the whole RLS protocol in one file.
//!
//! [`TenantTx::begin`] opens a transaction and, in the same round trip, before anything else runs:
//!
//! ```sql
//! BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE;
//! SELECT public.carevault_enter_tenant('<proof>', '<statement timeout>')
//! ```
//!
//! which sets, transaction-locally (migration 18), the settings every transaction pins for itself
//! (`lock_timeout`, `statement_timeout`, `search_path`, `synchronous_commit`, `row_security`:
//! `carevault_pin_transaction`), then
//!
//! ```sql
//! SELECT set_config('role', 'carevault_app', true),               -- SET LOCAL ROLE
//!        set_config('app.tenant_context', '<proof>', true)
//! ```
//!
//! and raises `CV001` ([`DbError::ContextRefused`]) unless the database accepts the proof.
//!
//! * The proof ([`crate::tenant_context`]) names the tenant and the acting user, and is bound to
//!   this connection (behind a transaction pooler: this transaction, read after `BEGIN`, one more
//!   round trip): the policies' function `carevault_current_tenant()` returns the tenant only when
//!   it verifies, so a session that sets the setting by itself (it can) sees nothing.
//! * `set_config(..., true)` is transaction-local: at COMMIT or ROLLBACK all of them revert, so
//!   nothing leaks to the next user of a pooled connection, and it works behind PgBouncer in
//!   transaction mode. (The reference used `SET LOCAL app.current_tenant_id = $1`, which is a
//!   syntax error: `SET` takes no bind parameters.)
//! * Switching to `carevault_app` makes RLS apply even when the pool logs in as a superuser or
//!   the table owner: the policies are `TO carevault_app`, and `carevault_app` is neither
//!   superuser, BYPASSRLS nor owner.
//! * No check when a connection goes back to the pool: the next transaction sets both the role
//!   and the context before its first statement, so nothing a previous user left at session
//!   level is ever read.
//!
//! Every repository method writes its audit row through [`TenantTx::audit`] on the same
//! transaction, so an action without its audit row cannot commit. The SQL executor is private:
//! code outside this crate can only call the repositories.

use serde_json::{Map, Value, json};
use sqlx::{PgConnection, Postgres, Transaction};

use crate::domain::{AuditAction, AuditContext, TenantId};
use crate::pool::{Connections, Lease, Statements};
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
    /// The slot of the connection, held until the transaction ends (declared after `tx`, so
    /// dropped after the connection went back to the slot's pool).
    _lease: Option<Lease>,
}

impl TenantTx {
    /// Opens a transaction for `tenant_id`, switched to `carevault_app`, acting as
    /// `context.user_id` when it is set: the user is named in the same round trip as the tenant,
    /// so a caller that already knows who is acting needs no [`TenantTx::set_user`].
    ///
    /// An unknown tenant is not an error here: RLS then shows nothing (callers that must reject
    /// unknown tenants check [`crate::repo::CurrentTenant::lookup`]).
    ///
    /// [`DbError::ContextRefused`] when the database does not accept the pool's key.
    #[tracing::instrument(skip_all, fields(tenant_id = %tenant_id))]
    pub async fn begin(pool: &AppPool, tenant_id: TenantId, context: AuditContext) -> Result<TenantTx, DbError> {
        match TenantTx::begin_once(pool, tenant_id, context.clone()).await {
            Err(error) if worth_another_try(&error) => TenantTx::begin_once(pool, tenant_id, context).await,
            other => other,
        }
    }

    async fn begin_once(pool: &AppPool, tenant_id: TenantId, context: AuditContext) -> Result<TenantTx, DbError> {
        let key = pool.key.clone();
        let statements = pool.statements;
        match &pool.connections {
            // One round trip: `BEGIN` and the proof in one simple-protocol message. The proof is a
            // literal there (it takes no bind parameters); it holds only [a-z0-9.-] and is bound
            // to this connection, so reading it in pg_stat_activity gains nothing.
            Connections::PerConnection(slots) => {
                let lease = slots.lease().await?;
                let binding = lease.binding().await?;
                let proof = key.prove(tenant_id, context.user_id, &binding, expiry_from_now());
                if !proof.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') {
                    return Err(DbError::ContextRefused(sqlx::Error::Protocol("malformed proof".into())));
                }
                let begin = format!(
                    "{}; SELECT public.carevault_enter_tenant('{proof}', '{}')",
                    crate::pool::BEGIN,
                    pool.statement_timeout
                );
                let tx = match lease.pool().begin_with(sqlx::AssertSqlSafe(begin)).await {
                    Ok(tx) => tx,
                    Err(error) => {
                        let error = crate::pool::acquire_error(lease.pool(), error);
                        // The message failed (a closed or replaced connection, a refused proof,
                        // a session left with a role or a 1 ms statement timeout...): sqlx did not
                        // see the transaction open, so it rolls nothing back. Close the connection
                        // and forget its binding, rather than keep either.
                        if !matches!(error, DbError::PoolExhausted) {
                            lease.close_connection().await;
                        }
                        return Err(error);
                    }
                };
                Ok(TenantTx { tx, tenant_id, context, statements, key, binding, _lease: Some(lease) })
            }
            // Behind a transaction pooler: `BEGIN`, then the binding of the server connection this
            // transaction landed on, then the proof.
            Connections::PerTransaction(_) => {
                let (mut tx, lease) = pool.begin_plain().await?;
                let binding = Binding::read_transaction(&mut tx).await?;
                let mut tenant_tx = TenantTx { tx, tenant_id, context, statements, key, binding, _lease: lease };
                let proof = tenant_tx.proof();
                statements
                    .query("SELECT public.carevault_enter_tenant($1, $2)")
                    .bind(proof)
                    .bind(&pool.statement_timeout)
                    .execute(&mut *tenant_tx.tx)
                    .await?;
                Ok(tenant_tx)
            }
        }
    }

    /// The proof of this transaction's tenant and acting user.
    fn proof(&self) -> String {
        self.key.prove(self.tenant_id, self.context.user_id, &self.binding, expiry_from_now())
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
        let proof = self.proof();
        self.statements
            .query("SELECT set_config('app.tenant_context', $1, true)")
            .bind(proof)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
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

    /// Runs `sql`, a read of at most one row that writes its own audit row in the same statement
    /// (one round trip, not two): `WITH d AS (<the read: $1 the tenant, $2 the key>), ` then
    /// [`audit_cte!`], then `SELECT * FROM d`. The audit row is `action` on the row found, with
    /// `details`; nothing is written when nothing is found.
    pub(crate) async fn fetch_audited<T>(
        &mut self,
        sql: &'static str,
        key: uuid::Uuid,
        action: AuditAction,
        details: Value,
    ) -> Result<Option<T>, DbError>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    {
        let metadata = audit_metadata(&self.context, details);
        Ok(self
            .statements
            .query_as(sql)
            .bind(self.tenant_id)
            .bind(key)
            .bind(self.context.user_id)
            .bind(action.as_str())
            .bind(action.resource_type().as_str())
            .bind(self.context.ip_address.map(|ip| ip.to_string()))
            .bind(self.context.user_agent.as_deref().map(truncate_user_agent))
            .bind(metadata)
            .fetch_optional(&mut *self.tx)
            .await?)
    }
}

/// Whether a failed [`TenantTx::begin`] is tried once more, on another (or a new) connection:
/// nothing was read or written yet. Yes when the first message found the connection closed by the
/// server (the pool does not ping before use), or the slot's connection replaced after its binding
/// was read (the proof named the old one), or the session in a state the message cannot start from
/// (a role switched, or a statement timeout set, at session level); the failed connection is
/// closed. Not when no connection could be opened at all: waiting as long again would only delay
/// the 503.
fn worth_another_try(error: &DbError) -> bool {
    match error {
        DbError::Unavailable(sqlx::Error::PoolTimedOut) => false,
        DbError::Unavailable(_) | DbError::ContextRefused(_) | DbError::Database(_) => true,
        _ => false,
    }
}

/// Inserts one audit row, in a statement of its own (tenant and platform paths; the other way is
/// [`TenantTx::fetch_audited`]'s).
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
    statements
        .query(concat!("INSERT INTO ", audit_insert_columns!(), " VALUES ($1, $2, $3, $4, $5, $6::inet, $7, $8)"))
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
