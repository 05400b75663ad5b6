//! Extractors: JSON bodies and queries with our error codes, the authenticated tenant request,
//! and the platform credential.

use std::marker::PhantomData;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use carevault_db::repo::{Tenant, User};
use carevault_db::{AuditContext, BoundedText, DbError, Email, TenantId, TenantTx, UserRole};
use serde::de::DeserializeOwned;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::{AuthError, VerifiedToken};
use crate::middleware::{ClientIp, RequestId};
use crate::{ApiError, AppState, ErrorCode};

/// A JSON body. Not JSON → 415 `REQ_415`; invalid JSON or wrong structure → 400 `VAL_001`; a
/// missing field → 422 `VAL_002`; too large → 413 `REQ_413`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    // serde's messages can quote the offending input: detail only (never in production).
    let text = rejection.body_text();
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(ErrorCode::Req415),
        JsonRejection::JsonDataError(_) if text.contains("missing field") => {
            ApiError::new(ErrorCode::Val002).with_detail(text)
        }
        JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => {
            ApiError::new(ErrorCode::Val001).with_detail(text)
        }
        other if other.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(ErrorCode::Req413),
        _ => ApiError::new(ErrorCode::Val001).with_detail(text),
    }
}

/// Query parameters; anything unparsable → 422 `VAL_003`.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::new(ErrorCode::Val003).with_message("invalid query parameter").with_detail(rejection.body_text())
}

/// The least role an endpoint needs (DESIGN §7.3's matrix).
pub trait MinRole: Send + Sync + 'static {
    /// The role.
    const ROLE: UserRole;
}

/// Any user of the tenant.
#[derive(Debug)]
pub struct Viewer;
/// Members and admins.
#[derive(Debug)]
pub struct Member;
/// Admins only.
#[derive(Debug)]
pub struct Admin;

impl MinRole for Viewer {
    const ROLE: UserRole = UserRole::Viewer;
}
impl MinRole for Member {
    const ROLE: UserRole = UserRole::Member;
}
impl MinRole for Admin {
    const ROLE: UserRole = UserRole::Admin;
}

fn rank(role: UserRole) -> u8 {
    match role {
        UserRole::Viewer => 0,
        UserRole::Member => 1,
        UserRole::Admin => 2,
    }
}

/// An authenticated tenant request, allowed by the role matrix, holding the request's one
/// [`TenantTx`]: the handler does its work and commits it (its audit rows with it). Dropping it
/// rolls everything back, including a just-in-time provisioning.
pub struct Authed<R> {
    /// The request's tenant transaction, acting as `user`.
    pub tx: TenantTx,
    /// The caller.
    pub user: User,
    /// The caller's tenant.
    pub tenant: Tenant,
    /// The verified token.
    pub token: VerifiedToken,
    role: PhantomData<R>,
}

impl<R: MinRole> FromRequestParts<AppState> for Authed<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or_else(|| ApiError::new(ErrorCode::Auth001))?;
        let token = state.inner.auth.verify(token).await.map_err(auth_error)?;
        let tenant_id = match &token.tenant {
            None => return Err(ApiError::new(ErrorCode::Auth005)),
            // The seeded System tenant holds platform rows only; nobody signs in to it.
            Some(serde_json::Value::String(text)) => match TenantId::parse(text) {
                Ok(id) if id != TenantId::SYSTEM => id,
                _ => return Err(ApiError::new(ErrorCode::Auth007)),
            },
            Some(_) => return Err(ApiError::new(ErrorCode::Auth007)),
        };
        // The lookups run in a transaction of the *claimed* tenant: RLS shows nothing of an
        // unknown one, which becomes a 403 (DESIGN §4).
        let mut tx = TenantTx::begin(&state.inner.app_pool, tenant_id, audit_context(parts)).await?;
        let tenant = match tx.tenant().lookup().await? {
            Some(tenant) if tenant.is_active() => tenant,
            _ => return Err(ApiError::new(ErrorCode::Auth007)),
        };
        let sub = BoundedText::parse("sub", &token.sub, 255).map_err(|_| ApiError::new(ErrorCode::Auth001))?;
        let user = match tx.users().find_by_external_id(sub.as_str()).await? {
            Some(user) if user.is_deleted() => return Err(ApiError::new(ErrorCode::Auth008)),
            Some(user) => user,
            None => {
                let email = token
                    .email
                    .as_deref()
                    .filter(|_| token.email_verified)
                    .and_then(|email| Email::parse(email).ok())
                    .ok_or_else(|| {
                        ApiError::new(ErrorCode::Auth001)
                            .with_message("token has no verified email to provision its user from")
                    })?;
                tx.users().provision(sub, email).await.map_err(|error| match error {
                    DbError::Conflict(_) => ApiError::new(ErrorCode::Res409)
                        .with_message("another active user of this tenant has the token's email"),
                    other => other.into(),
                })?
            }
        };
        tx.set_user(user.id).await?;
        if rank(user.role) < rank(R::ROLE) {
            // Committed on its own: the refusal is on record even though nothing else happens.
            let route = parts.extensions.get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
            let details = json!({ "method": parts.method.as_str(), "route": route, "required": R::ROLE.as_str() });
            tx.audit_log().append(carevault_db::AuditAction::AccessDenied, tenant_id.as_uuid(), details).await?;
            tx.commit().await?;
            return Err(ApiError::new(ErrorCode::Auth009));
        }
        Ok(Authed { tx, user, tenant, token, role: PhantomData })
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then_some(token.trim())
}

fn auth_error(error: AuthError) -> ApiError {
    match error {
        AuthError::Malformed(_) => ApiError::new(ErrorCode::Auth001),
        AuthError::Expired | AuthError::NotYetValid => ApiError::new(ErrorCode::Auth003),
        AuthError::BadSignature(_) => ApiError::new(ErrorCode::Auth004),
        AuthError::KeysUnavailable(why) => {
            tracing::warn!(%why, "identity provider keys unavailable");
            ApiError::new(ErrorCode::Sys001)
        }
    }
}

/// The audit context of a request: request id, client address, user agent.
pub(crate) fn audit_context(parts: &Parts) -> AuditContext {
    AuditContext {
        user_id: None,
        request_id: parts.extensions.get::<RequestId>().map(|id| id.0.clone()),
        ip_address: parts.extensions.get::<ClientIp>().and_then(|ip| ip.0),
        user_agent: parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string),
    }
}

/// The platform credential (`PLATFORM_API_TOKEN`), compared in constant time. A tenant token is
/// never equal to it.
#[derive(Debug)]
pub struct PlatformAuth {
    /// The audit context of the request.
    pub context: AuditContext,
}

impl FromRequestParts<AppState> for PlatformAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let expected =
            state.inner.config.platform_api_token.as_deref().ok_or_else(|| ApiError::new(ErrorCode::Req404))?;
        let given = bearer(parts).unwrap_or_default();
        // Compare digests: equal lengths, so not even the secret's length leaks through timing.
        let matches: bool = Sha256::digest(given.as_bytes()).ct_eq(&Sha256::digest(expected.as_bytes())).into();
        if !matches {
            let client = parts.extensions.get::<ClientIp>().and_then(|ip| ip.0);
            tracing::warn!(client = ?client, "platform API credential refused");
            return Err(ApiError::new(ErrorCode::Plat001));
        }
        Ok(PlatformAuth { context: audit_context(parts) })
    }
}
