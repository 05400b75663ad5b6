use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row};

use crate::domain::{AuditAction, BoundedText, Cursor, Deleted, Email, Page, PageLimit, TenantId, UserId, UserRole};
use crate::{DbError, TenantTx, ValidationError};

const ACTIVE_EMAIL_INDEX: &str = "idx_users_tenant_email_active";
const EMAIL_TAKEN: &str = "an active user with this email exists";
const ACTIVE_IDP_INDEX: &str = "idx_users_tenant_external_idp_active";
const IDP_TAKEN: &str = "an active user with this identity-provider id exists";

/// Unique violations of a user write, as conflicts a caller can act on.
fn user_conflict(error: sqlx::Error) -> DbError {
    match &error {
        sqlx::Error::Database(db) if db.constraint() == Some(ACTIVE_EMAIL_INDEX) => DbError::Conflict(EMAIL_TAKEN),
        sqlx::Error::Database(db) if db.constraint() == Some(ACTIVE_IDP_INDEX) => DbError::Conflict(IDP_TAKEN),
        _ => error.into(),
    }
}

/// A user of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// Email (lower-case).
    pub email: String,
    /// The identity provider's `sub`.
    pub external_idp_id: Option<String>,
    /// Display name.
    pub full_name: Option<String>,
    /// Role (a NULL role in the database reads as `viewer`).
    pub role: UserRole,
    /// Last successful login.
    pub last_login_at: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed (maintained by a trigger).
    pub updated_at: DateTime<Utc>,
    /// Soft-deleted at, if deleted.
    pub deleted_at: Option<DateTime<Utc>>,
}

impl User {
    /// Whether the user is soft-deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }

    /// Whether the user is not deleted.
    pub fn is_active(&self) -> bool {
        !self.is_deleted()
    }
}

impl<'r> FromRow<'r, PgRow> for User {
    fn from_row(row: &'r PgRow) -> Result<User, sqlx::Error> {
        User::from_columns(row, "")
    }
}

impl User {
    /// Decodes a user from `row`'s columns named `{prefix}{column}`: a join names them apart from
    /// the other table's ([`super::CurrentTenant::lookup_with_user`] uses `user_`).
    pub(crate) fn from_columns(row: &PgRow, prefix: &str) -> Result<User, sqlx::Error> {
        let column = |name: &'static str| -> Cow<'static, str> {
            if prefix.is_empty() { Cow::Borrowed(name) } else { Cow::Owned(format!("{prefix}{name}")) }
        };
        let role: Option<String> = row.try_get(&*column("role"))?;
        let role = match role {
            None => UserRole::Viewer,
            Some(text) => UserRole::parse(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        };
        Ok(User {
            id: row.try_get(&*column("id"))?,
            tenant_id: row.try_get(&*column("tenant_id"))?,
            email: row.try_get(&*column("email"))?,
            external_idp_id: row.try_get(&*column("external_idp_id"))?,
            full_name: row.try_get(&*column("full_name"))?,
            role,
            last_login_at: row.try_get(&*column("last_login_at"))?,
            created_at: row.try_get(&*column("created_at"))?,
            updated_at: row.try_get(&*column("updated_at"))?,
            deleted_at: row.try_get(&*column("deleted_at"))?,
        })
    }
}

/// A user to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Email, unique among the tenant's active users.
    pub email: Email,
    /// Role.
    pub role: UserRole,
    /// Display name (at most 255 characters).
    pub full_name: Option<BoundedText>,
    /// The identity provider's `sub` (at most 255 characters).
    pub external_idp_id: Option<BoundedText>,
}

/// A change to a user; `None` leaves a field unchanged, `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserUpdate {
    /// New email.
    pub email: Option<Email>,
    /// New role.
    pub role: Option<UserRole>,
    /// New display name.
    pub full_name: Option<Option<BoundedText>>,
    /// New identity-provider `sub`.
    pub external_idp_id: Option<Option<BoundedText>>,
}

impl UserUpdate {
    /// The names of the fields this update sets (for the audit row: names, never values).
    pub fn field_names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.email.is_some() {
            names.push("email");
        }
        if self.role.is_some() {
            names.push("role");
        }
        if self.full_name.is_some() {
            names.push("full_name");
        }
        if self.external_idp_id.is_some() {
            names.push("external_idp_id");
        }
        names
    }
}

/// The users of the transaction's tenant.
#[derive(Debug)]
pub struct Users<'t> {
    pub(crate) tx: &'t mut TenantTx,
}

impl TenantTx {
    /// The users repository.
    pub fn users(&mut self) -> Users<'_> {
        Users { tx: self }
    }
}

impl Users<'_> {
    /// Creates a user. An active user with the same email → [`DbError::Conflict`].
    #[tracing::instrument(skip_all)]
    pub async fn create(&mut self, new: NewUser) -> Result<User, DbError> {
        let user = self.insert(&new).await?;
        self.tx.audit(AuditAction::UserCreated, user.id.as_uuid(), json!({})).await?;
        Ok(user)
    }

    /// Just-in-time provisioning of a token's subject as a `viewer` (audited `user.provisioned`).
    #[tracing::instrument(skip_all)]
    pub async fn provision(&mut self, external_idp_id: BoundedText, email: Email) -> Result<User, DbError> {
        let new = NewUser { email, role: UserRole::Viewer, full_name: None, external_idp_id: Some(external_idp_id) };
        let user = self.insert(&new).await?;
        self.tx.audit(AuditAction::UserProvisioned, user.id.as_uuid(), json!({})).await?;
        Ok(user)
    }

    async fn insert(&mut self, new: &NewUser) -> Result<User, DbError> {
        let tenant_id = self.tx.tenant_id();
        self.tx.sql().query_as(concat!("INSERT INTO users (tenant_id, email, role, full_name, external_idp_id) VALUES ($1, $2, $3, $4, $5) RETURNING ", user_columns!()))
        .bind(tenant_id)
        .bind(new.email.as_str())
        .bind(new.role.as_str())
        .bind(new.full_name.as_ref().map(BoundedText::as_str))
        .bind(new.external_idp_id.as_ref().map(BoundedText::as_str))
        .fetch_one(self.tx.conn())
        .await
        .map_err(user_conflict)
    }

    /// An active user by id (audited `user.read`).
    #[tracing::instrument(skip_all, fields(user_id = %id))]
    pub async fn get(&mut self, id: UserId) -> Result<User, DbError> {
        const SQL: &str =
            concat!("SELECT ", user_columns!(), " FROM users WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL");
        self.read(SQL, id).await
    }

    /// An active user by id, locked until the transaction ends (audited `user.read`): the read
    /// an `If-Match` is checked on, so that no other change lands between the check and the write.
    #[tracing::instrument(skip_all, fields(user_id = %id))]
    pub async fn get_for_update(&mut self, id: UserId) -> Result<User, DbError> {
        const SQL: &str = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL FOR UPDATE"
        );
        self.read(SQL, id).await
    }

    /// One user by `sql` (tenant $1, id $2), audited `user.read`.
    async fn read(&mut self, sql: &'static str, id: UserId) -> Result<User, DbError> {
        let tenant_id = self.tx.tenant_id();
        let user: Option<User> =
            self.tx.sql().query_as(sql).bind(tenant_id).bind(id).fetch_optional(self.tx.conn()).await?;
        let user = user.ok_or(DbError::NotFound)?;
        self.tx.audit(AuditAction::UserRead, id.as_uuid(), json!({})).await?;
        Ok(user)
    }

    /// A page of users, newest first (audited `user.listed` with the count and ids).
    #[tracing::instrument(skip_all)]
    pub async fn list(
        &mut self,
        deleted: Deleted,
        limit: PageLimit,
        after: Option<Cursor>,
    ) -> Result<Page<User>, DbError> {
        let tenant_id = self.tx.tenant_id();
        let rows: Vec<User> = self
            .tx
            .sql()
            .query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users \
             WHERE tenant_id = $1 \
               AND CASE $2::int WHEN 0 THEN deleted_at IS NULL WHEN 1 THEN deleted_at IS NOT NULL ELSE true END \
               AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4)) \
             ORDER BY created_at DESC, id DESC LIMIT $5"
            ))
            .bind(tenant_id)
            .bind(deleted.code())
            .bind(after.map(|c| c.created_at))
            .bind(after.map(|c| c.id))
            .bind(i64::from(limit.get()) + 1)
            .fetch_all(self.tx.conn())
            .await?;
        let page = super::into_page(rows, limit, |u| Cursor { created_at: u.created_at, id: u.id.as_uuid() });
        let ids: Vec<UserId> = page.items.iter().map(|u| u.id).collect();
        self.tx.audit(AuditAction::UserListed, tenant_id.as_uuid(), json!({ "count": ids.len(), "ids": ids })).await?;
        Ok(page)
    }

    /// Changes an active user (audited `user.updated` with the names of the fields set).
    #[tracing::instrument(skip_all, fields(user_id = %id))]
    pub async fn update(&mut self, id: UserId, update: UserUpdate) -> Result<User, DbError> {
        let fields = update.field_names();
        if fields.is_empty() {
            return Err(ValidationError::new("body", "names no field to change").into());
        }
        let tenant_id = self.tx.tenant_id();
        let user: Option<User> = self
            .tx
            .sql()
            .query_as(concat!(
                "UPDATE users SET \
                email = coalesce($3, email), \
                role = coalesce($4, role), \
                full_name = CASE WHEN $5 THEN $6 ELSE full_name END, \
                external_idp_id = CASE WHEN $7 THEN $8 ELSE external_idp_id END \
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING ",
                user_columns!()
            ))
            .bind(tenant_id)
            .bind(id)
            .bind(update.email.as_ref().map(Email::as_str))
            .bind(update.role.map(|r| r.as_str()))
            .bind(update.full_name.is_some())
            .bind(update.full_name.as_ref().and_then(|n| n.as_ref().map(BoundedText::as_str)))
            .bind(update.external_idp_id.is_some())
            .bind(update.external_idp_id.as_ref().and_then(|n| n.as_ref().map(BoundedText::as_str)))
            .fetch_optional(self.tx.conn())
            .await
            .map_err(user_conflict)?;
        let user = user.ok_or(DbError::NotFound)?;
        self.tx.audit(AuditAction::UserUpdated, id.as_uuid(), json!({ "fields": fields })).await?;
        Ok(user)
    }

    /// Soft-deletes an active user (audited `user.deleted`). Already deleted → not found.
    #[tracing::instrument(skip_all, fields(user_id = %id))]
    pub async fn soft_delete(&mut self, id: UserId) -> Result<User, DbError> {
        let tenant_id = self.tx.tenant_id();
        let user: Option<User> = self.tx.sql().query_as(concat!(
            "UPDATE users SET deleted_at = now() WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING ",
            user_columns!()
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(self.tx.conn())
        .await?;
        let user = user.ok_or(DbError::NotFound)?;
        self.tx.audit(AuditAction::UserDeleted, id.as_uuid(), json!({})).await?;
        Ok(user)
    }

    /// Restores a soft-deleted user (audited `user.restored`). Not deleted → conflict; its email
    /// now taken by another active user → conflict.
    #[tracing::instrument(skip_all, fields(user_id = %id))]
    pub async fn restore(&mut self, id: UserId) -> Result<User, DbError> {
        let tenant_id = self.tx.tenant_id();
        let user: Option<User> = self.tx.sql().query_as(concat!(
            "UPDATE users SET deleted_at = NULL WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NOT NULL RETURNING ",
            user_columns!()
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(self.tx.conn())
        .await
        .map_err(user_conflict)?;
        let Some(user) = user else {
            return Err(self.not_found_or_active(id).await?);
        };
        self.tx.audit(AuditAction::UserRestored, id.as_uuid(), json!({})).await?;
        Ok(user)
    }

    async fn not_found_or_active(&mut self, id: UserId) -> Result<DbError, DbError> {
        let tenant_id = self.tx.tenant_id();
        let exists: bool = self
            .tx
            .sql()
            .query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE tenant_id = $1 AND id = $2)")
            .bind(tenant_id)
            .bind(id)
            .fetch_one(self.tx.conn())
            .await?;
        Ok(if exists { DbError::Conflict("the user is not deleted") } else { DbError::NotFound })
    }

    /// Sets `last_login_at` to now on an active user (audited `user.login`).
    #[tracing::instrument(skip_all, fields(user_id = %id))]
    pub async fn record_login(&mut self, id: UserId) -> Result<(), DbError> {
        let tenant_id = self.tx.tenant_id();
        let updated = self
            .tx
            .sql()
            .query("UPDATE users SET last_login_at = now() WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL")
            .bind(tenant_id)
            .bind(id)
            .execute(self.tx.conn())
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(DbError::NotFound);
        }
        self.tx.audit(AuditAction::UserLogin, id.as_uuid(), json!({})).await
    }
}
