//! Who am I, and my tenant.

use axum::Json;
use carevault_db::repo::Tenant;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::users::UserResponse;
use crate::ApiError;
use crate::extract::{Authed, Viewer};

/// A tenant.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantResponse {
    /// Id.
    pub id: uuid::Uuid,
    /// Name.
    pub name: String,
    /// `active`, `suspended` or `trial`.
    pub status: String,
    /// The email domains whose users may sign up just in time when `JIT_PROVISIONING=domains`.
    pub jit_email_domains: Vec<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Soft-deleted at.
    pub deleted_at: Option<DateTime<Utc>>,
}

impl From<Tenant> for TenantResponse {
    fn from(t: Tenant) -> TenantResponse {
        TenantResponse {
            id: t.id.as_uuid(),
            name: t.name,
            status: t.status.as_str().to_string(),
            jit_email_domains: t.jit_email_domains.iter().map(|d| d.as_str().to_owned()).collect(),
            created_at: t.created_at,
            updated_at: t.updated_at,
            deleted_at: t.deleted_at,
        }
    }
}

/// The answer of `/auth/validate`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ValidateResponse {
    /// The caller.
    pub user: UserResponse,
    /// The caller's tenant.
    pub tenant: TenantResponse,
    /// The caller's role (from the database, not the token).
    pub role: String,
    /// When the token expires.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Who am I: user, tenant, role and token expiry. Writes no audit row (it reads only the
/// caller's own records, like the authentication itself).
#[utoipa::path(get, path = "/api/v1/auth/validate", operation_id = "validateToken", tag = "auth", security(("bearer" = [])),
    responses((status = 200, description = "The token is valid; who and which tenant it names", body = ValidateResponse), (status = 401, description = "The bearer token is missing, invalid or expired", body = crate::error::ErrorEnvelope)))]
pub async fn validate(authed: Authed<Viewer>) -> Json<ValidateResponse> {
    // No transaction: the authentication read these records, and committed (and audited) a
    // just-in-time provisioning itself.
    let Authed { user, tenant, token, .. } = authed;
    Json(ValidateResponse {
        role: user.role.as_str().to_string(),
        user: user.into(),
        tenant: tenant.into(),
        expires_at: DateTime::from_timestamp(token.expires_at, 0),
    })
}

/// The caller's tenant (audited `tenant.read`).
#[utoipa::path(get, path = "/api/v1/tenants/current", operation_id = "getCurrentTenant", tag = "tenants", security(("bearer" = [])),
    responses((status = 200, description = "The caller's tenant", body = TenantResponse), (status = 401, description = "The bearer token is missing, invalid or expired", body = crate::error::ErrorEnvelope)))]
pub async fn current_tenant(authed: Authed<Viewer>) -> Result<Json<TenantResponse>, ApiError> {
    let mut tx = authed.begin().await?;
    let tenant = tx.tenant().read().await?;
    tx.commit().await?;
    Ok(Json(tenant.into()))
}
