//! `GET /audit-logs` and `GET /audit-logs/checkpoints/latest` (admins).

use axum::Json;
use carevault_db::repo::{AuditEntry, AuditFilter};
use carevault_db::{AuditAction, AuditResourceType, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ListResponse, PageQuery, parse_id};
use crate::extract::{Admin, ApiQuery, Authed};
use crate::{ApiError, ErrorCode, schema};

/// One audit row.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntryResponse {
    /// Id.
    pub id: uuid::Uuid,
    /// Acting user (`null` for system and platform actions).
    pub user_id: Option<uuid::Uuid>,
    /// Action, e.g. `document.read`.
    pub action: String,
    /// Resource type.
    pub resource_type: String,
    /// Resource id.
    pub resource_id: uuid::Uuid,
    /// Client IP address.
    pub ip_address: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// Request id, counts, ids, field names.
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// When: the database's clock at insertion.
    pub created_at: DateTime<Utc>,
    /// Whether the row is in the tenant's hash chain yet: rows are chained by the sealer within
    /// seconds of their commit (docs/AUDIT_FORMAT.md).
    pub sealed: bool,
    /// Its place in the tenant's chain (`null` until sealed).
    pub seq: Option<i64>,
    /// Its chain hash, 64 hex digits (`null` until sealed).
    pub hash: Option<String>,
}

impl From<AuditEntry> for AuditEntryResponse {
    fn from(e: AuditEntry) -> AuditEntryResponse {
        AuditEntryResponse {
            id: e.id.as_uuid(),
            user_id: e.user_id.map(|u| u.as_uuid()),
            action: e.action,
            resource_type: e.resource_type,
            resource_id: e.resource_id,
            ip_address: e.ip_address,
            user_agent: e.user_agent,
            metadata: e.metadata,
            created_at: e.created_at,
            sealed: e.seq.is_some(),
            seq: e.seq,
            hash: e.hash,
        }
    }
}

/// A signed checkpoint of the tenant's audit chain (docs/AUDIT_FORMAT.md, "Checkpoints").
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckpointResponse {
    /// The tenant.
    pub tenant_id: uuid::Uuid,
    /// The chain's head when signed.
    pub seq: i64,
    /// The head's hash, 64 hex digits.
    pub head_hash: String,
    /// When it was signed.
    pub signed_at: DateTime<Utc>,
    /// The id of the signing key (16 hex digits): the first 8 bytes of the SHA-256 of its
    /// public key, which `carevault audit public-key` prints.
    pub key_id: String,
    /// The Ed25519 signature, 128 hex digits.
    pub signature: String,
}

/// The tenant's latest signed checkpoint (admin; audited `audit.read`). 404 `RES_404` before the
/// first one is signed.
#[utoipa::path(get, path = "/api/v1/audit-logs/checkpoints/latest", operation_id = "getLatestAuditCheckpoint", tag = "audit", security(("bearer" = [])),
    responses((status = 200, description = "The latest checkpoint", body = CheckpointResponse), (status = 403, description = "The caller's role may not do this", body = crate::error::ErrorEnvelope), (status = 404, description = "No checkpoint signed yet", body = crate::error::ErrorEnvelope)))]
pub async fn latest_checkpoint(authed: Authed<Admin>) -> Result<Json<CheckpointResponse>, ApiError> {
    let mut tx = authed.begin().await?;
    let checkpoint = tx.audit_log().latest_checkpoint().await?;
    tx.commit().await?;
    let checkpoint = checkpoint.ok_or_else(|| {
        ApiError::new(ErrorCode::Res404).with_message("no checkpoint of this tenant's audit chain yet")
    })?;
    Ok(Json(CheckpointResponse {
        tenant_id: checkpoint.tenant_id.as_uuid(),
        seq: checkpoint.seq,
        head_hash: checkpoint.head_hash,
        signed_at: checkpoint.signed_at,
        key_id: checkpoint.key_id,
        signature: checkpoint.signature,
    }))
}

/// `GET /audit-logs` filters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Exact action.
    #[param(value_type = Option<schema::AuditActionName>)]
    pub action: Option<String>,
    /// Exact resource type.
    #[param(value_type = Option<schema::AuditResourceTypeName>)]
    pub resource_type: Option<String>,
    /// Exact resource id.
    #[param(value_type = Option<uuid::Uuid>)]
    pub resource_id: Option<String>,
    /// Acting user.
    #[param(value_type = Option<uuid::Uuid>)]
    pub user_id: Option<String>,
    /// At or after (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    pub since: Option<String>,
    /// Before (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    pub until: Option<String>,
    /// Rows per page: 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(value_type = Option<schema::PageCursor>)]
    pub cursor: Option<String>,
}

fn timestamp(field: &'static str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|text| {
            DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).map_err(|_| {
                ApiError::new(ErrorCode::Val003).with_message(format!("{field}: must be an RFC 3339 timestamp"))
            })
        })
        .transpose()
}

/// The tenant's audit log, newest first (admin; itself audited `audit.read`).
#[utoipa::path(get, path = "/api/v1/audit-logs", operation_id = "listAuditLogs", tag = "audit", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, description = "A page of the tenant's audit rows, newest first", body = ListResponse<AuditEntryResponse>), (status = 403, description = "The caller's role may not do this", body = crate::error::ErrorEnvelope)))]
pub async fn list(
    authed: Authed<Admin>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<ListResponse<AuditEntryResponse>>, ApiError> {
    let filter = AuditFilter {
        action: query.action.as_deref().map(AuditAction::parse).transpose()?,
        resource_type: query.resource_type.as_deref().map(AuditResourceType::parse).transpose()?,
        resource_id: query
            .resource_id
            .as_deref()
            .map(|id| {
                uuid::Uuid::parse_str(id)
                    .map_err(|_| ApiError::new(ErrorCode::Val003).with_message("resource_id: must be a UUID"))
            })
            .transpose()?,
        user_id: query.user_id.as_deref().map(parse_id::<UserId>).transpose()?,
        since: timestamp("since", query.since.as_deref())?,
        until: timestamp("until", query.until.as_deref())?,
    };
    let (limit, cursor) = PageQuery { limit: query.limit, cursor: query.cursor }.parse()?;
    let mut tx = authed.begin().await?;
    let page = tx.audit_log().list(&filter, limit, cursor).await?;
    tx.commit().await?;
    Ok(Json(ListResponse::from_page(page, AuditEntryResponse::from)))
}
