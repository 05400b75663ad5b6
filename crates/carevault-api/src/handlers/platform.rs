//! `/platform/tenants`: tenant administration on `PLATFORM_API_TOKEN`, on the platform pool.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use carevault_db::{EmailDomain, PlatformTx, TenantId, TenantStatus};
use serde::Deserialize;

use super::me::TenantResponse;
use super::{ListResponse, PageQuery, parse_deleted, parse_id};
use crate::extract::{ApiJson, ApiQuery, PlatformAuth};
use crate::{ApiError, AppState, schema};

/// `POST /platform/tenants`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    /// Name.
    #[schema(value_type = schema::Text255)]
    pub name: String,
    /// `active` (default), `suspended` or `trial`.
    #[schema(value_type = Option<schema::TenantStatusName>)]
    pub status: Option<String>,
}

/// `PUT /platform/tenants/{id}/jit-email-domains`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JitEmailDomainsRequest {
    /// The whole new list (it replaces the old one); empty: nobody signs up by themselves.
    /// Sorted and without repeats when stored.
    #[schema(value_type = Vec<schema::EmailDomainName>, max_items = 50)]
    pub domains: Vec<String>,
}

/// `GET /platform/tenants` filters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TenantListQuery {
    /// `exclude` (default), `only` or `include` soft-deleted tenants.
    #[param(value_type = Option<schema::DeletedFilter>)]
    pub deleted: Option<String>,
    /// Rows per page: 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(value_type = Option<schema::PageCursor>)]
    pub cursor: Option<String>,
}

/// Creates a tenant (audited `tenant.created` in its own log).
#[utoipa::path(post, path = "/api/v1/platform/tenants", operation_id = "createTenant", tag = "platform", security(("platform" = [])), request_body = CreateTenantRequest,
    responses((status = 201, description = "The tenant, created", body = TenantResponse), (status = 401, description = "The platform token is missing or wrong", body = crate::error::ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    auth: PlatformAuth,
    ApiJson(body): ApiJson<CreateTenantRequest>,
) -> Result<(StatusCode, Json<TenantResponse>), ApiError> {
    let name = schema::Text255::parse("name", &body.name)?;
    let status = body.status.as_deref().map(TenantStatus::parse).transpose()?.unwrap_or(TenantStatus::Active);
    let mut tx = PlatformTx::begin(&state.inner.platform_pool, auth.context).await?;
    let tenant = tx.tenants().create(name, status).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(tenant.into())))
}

/// Lists tenants, newest first.
#[utoipa::path(get, path = "/api/v1/platform/tenants", operation_id = "listTenants", tag = "platform", security(("platform" = [])), params(TenantListQuery),
    responses((status = 200, description = "A page of tenants", body = ListResponse<TenantResponse>)))]
pub async fn list(
    State(state): State<AppState>,
    auth: PlatformAuth,
    ApiQuery(query): ApiQuery<TenantListQuery>,
) -> Result<Json<ListResponse<TenantResponse>>, ApiError> {
    let deleted = parse_deleted(query.deleted.as_deref())?;
    let (limit, cursor) = PageQuery { limit: query.limit, cursor: query.cursor }.parse()?;
    let mut tx = PlatformTx::begin(&state.inner.platform_pool, auth.context).await?;
    let page = tx.tenants().list(deleted, limit, cursor).await?;
    tx.commit().await?;
    Ok(Json(ListResponse::from_page(page, TenantResponse::from)))
}

/// Suspends a tenant (audited `tenant.suspended`).
#[utoipa::path(post, path = "/api/v1/platform/tenants/{id}/suspend", operation_id = "suspendTenant", tag = "platform", security(("platform" = [])), params(("id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The tenant, suspended", body = TenantResponse), (status = 404, description = "No such tenant", body = crate::error::ErrorEnvelope)))]
pub async fn suspend(
    State(state): State<AppState>,
    auth: PlatformAuth,
    Path(id): Path<String>,
) -> Result<Json<TenantResponse>, ApiError> {
    set_status(&state, auth, &id, TenantStatus::Suspended).await
}

/// Activates a tenant (audited `tenant.activated`).
#[utoipa::path(post, path = "/api/v1/platform/tenants/{id}/activate", operation_id = "activateTenant", tag = "platform", security(("platform" = [])), params(("id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The tenant, active", body = TenantResponse), (status = 404, description = "No such tenant", body = crate::error::ErrorEnvelope)))]
pub async fn activate(
    State(state): State<AppState>,
    auth: PlatformAuth,
    Path(id): Path<String>,
) -> Result<Json<TenantResponse>, ApiError> {
    set_status(&state, auth, &id, TenantStatus::Active).await
}

async fn set_status(
    state: &AppState,
    auth: PlatformAuth,
    id: &str,
    status: TenantStatus,
) -> Result<Json<TenantResponse>, ApiError> {
    let id: TenantId = parse_id(id)?;
    let mut tx = PlatformTx::begin(&state.inner.platform_pool, auth.context).await?;
    let tenant = match status {
        TenantStatus::Suspended => tx.tenants().suspend(id).await?,
        _ => tx.tenants().activate(id).await?,
    };
    tx.commit().await?;
    state.inner.callers.forget_tenant(id);
    Ok(Json(tenant.into()))
}

/// Replaces the email domains whose users may sign up just in time when `JIT_PROVISIONING=domains`
/// (audited `tenant.updated`).
#[utoipa::path(put, path = "/api/v1/platform/tenants/{id}/jit-email-domains", operation_id = "setTenantJitEmailDomains", tag = "platform", security(("platform" = [])), params(("id" = uuid::Uuid, Path)), request_body = JitEmailDomainsRequest,
    responses((status = 200, description = "The tenant, with its new list", body = TenantResponse), (status = 404, description = "No such tenant, or a deleted one", body = crate::error::ErrorEnvelope)))]
pub async fn set_jit_email_domains(
    State(state): State<AppState>,
    auth: PlatformAuth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<JitEmailDomainsRequest>,
) -> Result<Json<TenantResponse>, ApiError> {
    let id: TenantId = parse_id(&id)?;
    let domains = EmailDomain::parse_list(&body.domains)?;
    let mut tx = PlatformTx::begin(&state.inner.platform_pool, auth.context).await?;
    let tenant = tx.tenants().set_jit_email_domains(id, &domains).await?;
    tx.commit().await?;
    state.inner.callers.forget_tenant(id);
    Ok(Json(tenant.into()))
}
