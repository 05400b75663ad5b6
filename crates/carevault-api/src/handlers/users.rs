//! `/users`: read by everyone, changed by admins.

use axum::Json;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use carevault_db::repo::{NewUser, User, UserUpdate};
use carevault_db::{Email, UserId, UserRole};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::etag::{EtagHeader, check_if_match, etag_header, has_if_match};
use super::{ListResponse, PageQuery, double_option, not_null, optional_text, parse_deleted, parse_id};
use crate::extract::{Admin, ApiJson, ApiQuery, Authed, Viewer};
use crate::{ApiError, ErrorCode, schema};

/// A user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserResponse {
    /// Id.
    pub id: uuid::Uuid,
    /// Email.
    pub email: String,
    /// Display name.
    pub full_name: Option<String>,
    /// `admin`, `member` or `viewer`.
    pub role: String,
    /// The identity provider's `sub`.
    pub external_idp_id: Option<String>,
    /// Last login.
    pub last_login_at: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Soft-deleted at.
    pub deleted_at: Option<DateTime<Utc>>,
}

impl From<User> for UserResponse {
    fn from(u: User) -> UserResponse {
        UserResponse {
            id: u.id.as_uuid(),
            email: u.email,
            full_name: u.full_name,
            role: u.role.as_str().to_string(),
            external_idp_id: u.external_idp_id,
            last_login_at: u.last_login_at,
            created_at: u.created_at,
            updated_at: u.updated_at,
            deleted_at: u.deleted_at,
        }
    }
}

/// `POST /users`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// Email, unique among the tenant's active users.
    #[schema(value_type = schema::EmailAddress)]
    pub email: String,
    /// `admin`, `member` or `viewer`.
    #[schema(value_type = schema::UserRoleName)]
    pub role: String,
    /// Display name.
    #[schema(value_type = Option<schema::Text255>)]
    pub full_name: Option<String>,
    /// The identity provider's `sub`, unique among the tenant's active users.
    #[schema(value_type = Option<schema::Text255>)]
    pub external_idp_id: Option<String>,
}

/// `PATCH /users/{id}`: only the fields present change, at least one must be; `null` clears a
/// nullable one.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateUserRequest {
    /// New email (not `null`).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = schema::EmailAddress)]
    pub email: Option<Option<String>>,
    /// New role (not `null`).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = schema::UserRoleName)]
    pub role: Option<Option<String>>,
    /// New display name (`null` clears it).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<schema::Text255>)]
    pub full_name: Option<Option<String>>,
    /// New identity-provider `sub` (`null` clears it).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<schema::Text255>)]
    pub external_idp_id: Option<Option<String>>,
}

/// `GET /users` filters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    /// `exclude` (default), `only` or `include` soft-deleted users.
    #[param(value_type = Option<schema::DeletedFilter>)]
    pub deleted: Option<String>,
    /// Rows per page: 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(value_type = Option<schema::PageCursor>)]
    pub cursor: Option<String>,
}

/// Creates a user (admin; audited `user.created`).
#[utoipa::path(post, path = "/api/v1/users", operation_id = "createUser", tag = "users", security(("bearer" = [])), request_body = CreateUserRequest,
    responses((status = 201, description = "The user, created", body = UserResponse), (status = 409, description = "An active user of the tenant has this email or identity subject", body = crate::error::ErrorEnvelope), (status = 422, description = "Invalid input; the error envelope names the field", body = crate::error::ErrorEnvelope)))]
pub async fn create(
    authed: Authed<Admin>,
    ApiJson(body): ApiJson<CreateUserRequest>,
) -> Result<(StatusCode, Json<UserResponse>), ApiError> {
    let new = NewUser {
        email: Email::parse(&body.email)?,
        role: UserRole::parse(&body.role)?,
        full_name: optional_text("full_name", body.full_name.as_deref(), schema::Text255::MAX)?,
        external_idp_id: optional_text("external_idp_id", body.external_idp_id.as_deref(), schema::Text255::MAX)?,
    };
    let mut tx = authed.begin().await?;
    let user = tx.users().create(new).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Lists users, newest first (audited `user.listed`).
#[utoipa::path(get, path = "/api/v1/users", operation_id = "listUsers", tag = "users", security(("bearer" = [])), params(UserListQuery),
    responses((status = 200, description = "A page of the tenant's users", body = ListResponse<UserResponse>)))]
pub async fn list(
    authed: Authed<Viewer>,
    ApiQuery(query): ApiQuery<UserListQuery>,
) -> Result<Json<ListResponse<UserResponse>>, ApiError> {
    let deleted = parse_deleted(query.deleted.as_deref())?;
    let (limit, cursor) = PageQuery { limit: query.limit, cursor: query.cursor }.parse()?;
    let mut tx = authed.begin().await?;
    let page = tx.users().list(deleted, limit, cursor).await?;
    tx.commit().await?;
    Ok(Json(ListResponse::from_page(page, UserResponse::from)))
}

/// A user (audited `user.read`), with its `ETag`.
#[utoipa::path(get, path = "/api/v1/users/{id}", operation_id = "getUser", tag = "users", security(("bearer" = [])), params(("id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The user", body = UserResponse, headers(("ETag" = String, description = "The version, for If-Match"))),
        (status = 404, description = "No such user in the caller's tenant", body = crate::error::ErrorEnvelope)))]
pub async fn get(authed: Authed<Viewer>, Path(id): Path<String>) -> Result<(EtagHeader, Json<UserResponse>), ApiError> {
    let id: UserId = parse_id(&id)?;
    let mut tx = authed.begin().await?;
    let user = tx.users().get(id).await?;
    tx.commit().await?;
    Ok((etag_header(&user), Json(user.into())))
}

/// Changes a user (admin; audited `user.updated` with the names of the fields set). With
/// `If-Match`, only the version it names changes.
#[utoipa::path(patch, path = "/api/v1/users/{id}", operation_id = "updateUser", tag = "users", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header, description = super::etag::IF_MATCH_CHANGE)),
    request_body = UpdateUserRequest, responses((status = 200, description = "The user, updated", body = UserResponse), (status = 404, description = "No such user in the caller's tenant", body = crate::error::ErrorEnvelope),
        (status = 409, description = "the email or identity subject is taken, or the change would remove the caller's own admin access", body = crate::error::ErrorEnvelope),
        (status = 412, description = "If-Match names another version", body = crate::error::ErrorEnvelope)))]
pub async fn update(
    authed: Authed<Admin>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateUserRequest>,
) -> Result<(EtagHeader, Json<UserResponse>), ApiError> {
    let id: UserId = parse_id(&id)?;
    let update = UserUpdate {
        email: not_null("email", body.email)?.as_deref().map(Email::parse).transpose()?,
        role: not_null("role", body.role)?.as_deref().map(UserRole::parse).transpose()?,
        full_name: body
            .full_name
            .map(|v| optional_text("full_name", v.as_deref(), schema::Text255::MAX))
            .transpose()?,
        external_idp_id: body
            .external_idp_id
            .map(|v| optional_text("external_idp_id", v.as_deref(), schema::Text255::MAX))
            .transpose()?,
    };
    // An admin cannot lock themselves out: demoting their own role or changing their own identity
    // subject would end their admin session, possibly the tenant's last one.
    if id == authed.user.id
        && (update.role.is_some_and(|role| role != UserRole::Admin) || update.external_idp_id.is_some())
    {
        return Err(ApiError::new(ErrorCode::Res409).with_message("you cannot remove your own admin access"));
    }
    let mut tx = authed.begin().await?;
    // Checked on a locked read, so that no other change lands between the check and the write.
    if has_if_match(&headers) {
        let current = tx.users().get_for_update(id).await?;
        check_if_match(&headers, &current)?;
    }
    let user = tx.users().update(id, update).await?;
    tx.commit().await?;
    authed.forget_tenant_callers();
    Ok((etag_header(&user), Json(user.into())))
}

/// Soft-deletes a user (admin; audited `user.deleted`). With `If-Match`, only the version it
/// names.
#[utoipa::path(delete, path = "/api/v1/users/{id}", operation_id = "deleteUser", tag = "users", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header, description = super::etag::IF_MATCH_DELETE)),
    responses((status = 200, description = "The user, soft-deleted", body = UserResponse), (status = 404, description = "No such user in the caller's tenant", body = crate::error::ErrorEnvelope),
        (status = 409, description = "the caller cannot delete themselves", body = crate::error::ErrorEnvelope),
        (status = 412, description = "If-Match names another version", body = crate::error::ErrorEnvelope)))]
pub async fn delete(
    authed: Authed<Admin>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<(EtagHeader, Json<UserResponse>), ApiError> {
    let id: UserId = parse_id(&id)?;
    if id == authed.user.id {
        return Err(ApiError::new(ErrorCode::Res409).with_message("you cannot delete yourself"));
    }
    let mut tx = authed.begin().await?;
    if has_if_match(&headers) {
        let current = tx.users().get_for_update(id).await?;
        check_if_match(&headers, &current)?;
    }
    let user = tx.users().soft_delete(id).await?;
    tx.commit().await?;
    authed.forget_tenant_callers();
    Ok((etag_header(&user), Json(user.into())))
}

/// Restores a soft-deleted user (admin; audited `user.restored`).
#[utoipa::path(post, path = "/api/v1/users/{id}/restore", operation_id = "restoreUser", tag = "users", security(("bearer" = [])), params(("id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The user, restored", body = UserResponse), (status = 404, description = "No such user in the caller's tenant", body = crate::error::ErrorEnvelope), (status = 409, description = "The user is not deleted, or an active user has its email or identity subject", body = crate::error::ErrorEnvelope)))]
pub async fn restore(authed: Authed<Admin>, Path(id): Path<String>) -> Result<Json<UserResponse>, ApiError> {
    let id: UserId = parse_id(&id)?;
    let mut tx = authed.begin().await?;
    let user = tx.users().restore(id).await?;
    tx.commit().await?;
    authed.forget_tenant_callers();
    Ok(Json(user.into()))
}
