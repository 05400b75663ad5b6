//! Extractors: JSON bodies and queries with our error codes, the authenticated tenant request,
//! and the platform credential.

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use carevault_db::repo::{Tenant, User};
use carevault_db::{AppPool, AuditContext, BoundedText, DbError, Email, TenantId, TenantTx, UserRole};
use serde::de::DeserializeOwned;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::VerifiedToken;
use crate::caller_cache::CallerCache;
use crate::middleware::{ClientIp, RequestId};
use crate::{ApiError, AppState, ErrorCode, JitProvisioning};

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

/// The least role an endpoint needs (the role matrix of docs/ARCHITECTURE.md, "HTTP API").
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

/// An authenticated tenant request, allowed by the role matrix: who is calling, and the door to
/// their tenant's data. It holds no database connection.
///
/// Extraction verifies the token (no database), then resolves the caller in a short
/// [`TenantTx`] of its own (tenant, user, just-in-time provisioning, role matrix), commits it and
/// releases the connection before the handler runs. Authentication and authorisation errors (401,
/// 403) therefore still come from the extractor, before the handler validates its input. The
/// tenant, the user and the role are as read then: a suspension, deletion or demotion committed
/// later applies from the caller's next request.
///
/// The handler opens the tenant's transaction with [`Authed::begin`] when it needs the database,
/// after parsing its input, so that neither a validation error nor a call to another service
/// (object store, key service, ...) holds a pooled connection. Each access to tenant data writes
/// its audit row on the transaction it runs in (the repositories see to it); a handler that opens
/// several transactions, one after the other, commits each on its own.
///
/// A just-in-time provisioning (audited `user.provisioned`) is a complete action, committed by the
/// extractor: it stays even when the handler later fails.
pub struct Authed<R> {
    /// The caller (as read during extraction).
    pub user: User,
    /// The caller's tenant (as read during extraction).
    pub tenant: Tenant,
    /// The verified token.
    pub token: VerifiedToken,
    /// The request's audit context, naming the caller.
    context: AuditContext,
    /// The pool of the tenant path, for [`Authed::begin`].
    pool: AppPool,
    /// The remembered callers, for [`Authed::forget_tenant_callers`].
    callers: Arc<CallerCache>,
    role: PhantomData<R>,
}

impl<R> Authed<R> {
    /// Opens a transaction of the caller's tenant acting as the caller (the user of the proof and
    /// the `user_id` of its audit rows), in one round trip after `BEGIN`. Call it when the
    /// database is needed, and commit what it returns: dropping it rolls back, audit rows
    /// included.
    ///
    /// ```no_run
    /// # use carevault_api::extract::{Authed, Viewer};
    /// # async fn handler(authed: Authed<Viewer>) -> Result<(), carevault_api::ApiError> {
    /// // ... parse and validate the input first: no connection is held yet ...
    /// let mut tx = authed.begin().await?;
    /// let tenant = tx.tenant().read().await?; // audited `tenant.read`, on this transaction
    /// tx.commit().await?;
    /// # let _ = tenant; Ok(()) }
    /// ```
    pub async fn begin(&self) -> Result<TenantTx, DbError> {
        TenantTx::begin(&self.pool, self.tenant.id, self.context.clone()).await
    }

    /// The request's audit context: request id, client address, user agent, and the caller.
    pub fn context(&self) -> &AuditContext {
        &self.context
    }

    /// Forgets the remembered callers of this tenant: call it after committing a change of a
    /// user's role or existence, so that it applies to the next request at once.
    pub fn forget_tenant_callers(&self) {
        self.callers.forget_tenant(self.tenant.id);
    }
}

impl<R: MinRole> FromRequestParts<AppState> for Authed<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or_else(|| ApiError::new(ErrorCode::Auth001))?;
        let token = state.inner.auth.verify(token).await?;
        let tenant_id = claimed_tenant(&token)?;
        state.inner.rate_limiter.check(tenant_id, &token.sub)?;
        let pool = &state.inner.app_pool;
        let callers = &state.inner.callers;
        let (tenant, user) = match callers.get(tenant_id, &token.sub) {
            Some(known) => known,
            None => {
                let jit = state.inner.config.jit_provisioning;
                let generation = callers.generation();
                let (tenant, user) = resolve_caller(pool, tenant_id, &token, jit, parts).await?;
                callers.put(generation, &tenant, &token.sub, &user);
                (tenant, user)
            }
        };
        let mut context = audit_context(parts);
        context.user_id = Some(user.id);
        if rank(user.role) < rank(R::ROLE) {
            return Err(deny(pool, tenant_id, context, R::ROLE, parts).await);
        }
        Ok(Authed { user, tenant, token, context, pool: pool.clone(), callers: callers.clone(), role: PhantomData })
    }
}

/// The tenant the token claims. The seeded System tenant holds platform rows only; nobody signs in
/// to it.
fn claimed_tenant(token: &VerifiedToken) -> Result<TenantId, ApiError> {
    match &token.tenant {
        None => Err(ApiError::new(ErrorCode::Auth005)),
        Some(serde_json::Value::String(text)) => match TenantId::parse(text) {
            Ok(id) if id != TenantId::SYSTEM => Ok(id),
            _ => Err(ApiError::new(ErrorCode::Auth007)),
        },
        Some(_) => Err(ApiError::new(ErrorCode::Auth007)),
    }
}

/// Resolves the caller in a transaction of its own, committed before the handler runs: the
/// tenant (existing and active, else 403 `AUTH_007`) and the user by `sub` in one lookup (a
/// soft-deleted user is 403 `AUTH_008`; an unknown `sub` is provisioned as a viewer when `jit`
/// admits its verified email, else 403 `AUTH_010`). It writes nothing otherwise.
async fn resolve_caller(
    pool: &AppPool,
    tenant_id: TenantId,
    token: &VerifiedToken,
    jit: JitProvisioning,
    parts: &Parts,
) -> Result<(Tenant, User), ApiError> {
    // The `sub` is matched byte for byte. Stored identities are `BoundedText`s (trimmed, no control
    // characters), so a `sub` that is not already in that form can match no user, and provisioning
    // it would store another, trimmed, identity: it is refused (401), like one that is not valid
    // text, only after the tenant check, so that an unknown tenant is reported first.
    let sub = BoundedText::parse("sub", &token.sub, 255).ok().filter(|sub| sub.as_str() == token.sub).ok_or(());
    // The transaction is the *claimed* tenant's: RLS shows nothing of an unknown one, which
    // becomes a 403.
    let mut tx = TenantTx::begin(pool, tenant_id, audit_context(parts)).await?;
    let Ok(sub) = sub else {
        // Never sent to the database: a NUL, say, would make PostgreSQL raise (a 500).
        return Err(match tx.tenant().lookup().await? {
            Some(tenant) if tenant.is_active() => ApiError::new(ErrorCode::Auth001),
            _ => ApiError::new(ErrorCode::Auth007),
        });
    };
    let (tenant, found) = match tx.tenant().lookup_with_user(sub.as_str()).await? {
        Some((tenant, found)) if tenant.is_active() => (tenant, found),
        _ => return Err(ApiError::new(ErrorCode::Auth007)),
    };
    let user = match found {
        Some(user) if user.is_deleted() => return Err(ApiError::new(ErrorCode::Auth008)),
        Some(user) => user,
        None => provision(&mut tx, &tenant, sub, token, jit).await?,
    };
    tx.commit().await?;
    Ok((tenant, user))
}

/// A refusal by the role matrix: 403 `AUTH_009`, audited `access.denied` in a transaction of its
/// own, committed (it is on record even though nothing else happens).
async fn deny(
    pool: &AppPool,
    tenant_id: TenantId,
    context: AuditContext,
    required: UserRole,
    parts: &Parts,
) -> ApiError {
    let route = parts.extensions.get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
    let details = json!({ "method": parts.method.as_str(), "route": route, "required": required.as_str() });
    let recorded = async {
        let mut tx = TenantTx::begin(pool, tenant_id, context).await?;
        tx.audit_log().append(carevault_db::AuditAction::AccessDenied, tenant_id.as_uuid(), details).await?;
        tx.commit().await
    }
    .await;
    match recorded {
        Ok(()) => ApiError::new(ErrorCode::Auth009),
        Err(error) => error.into(),
    }
}

/// Just-in-time provisioning of an unknown `sub` as a viewer, from the token's verified email, when
/// `jit` admits it. A refusal writes nothing (the transaction is dropped).
async fn provision(
    tx: &mut TenantTx,
    tenant: &Tenant,
    sub: BoundedText,
    token: &VerifiedToken,
    jit: JitProvisioning,
) -> Result<User, ApiError> {
    if jit == JitProvisioning::Off {
        return Err(ApiError::new(ErrorCode::Auth010));
    }
    let verified = token.email.as_deref().filter(|_| token.email_verified);
    let email = verified.and_then(|email| Email::parse(email).ok()).ok_or_else(|| {
        ApiError::new(ErrorCode::Auth001).with_message("token has no verified email to provision its user from")
    })?;
    if jit == JitProvisioning::Domains && !tenant.jit_email_domains.iter().any(|domain| domain.admits(&email)) {
        return Err(ApiError::new(ErrorCode::Auth010)
            .with_message("no such user in this tenant, and the email's domain may not sign up by itself"));
    }
    tx.users().provision(sub, email).await.map_err(|error| match error {
        DbError::Conflict(_) => {
            ApiError::new(ErrorCode::Res409).with_message("another active user of this tenant has the token's email")
        }
        other => other.into(),
    })
}

pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then_some(token.trim())
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
