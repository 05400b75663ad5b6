//! Liveness and readiness; no authentication.

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Serialize;

use crate::{AppState, Environment, ErrorBody, ErrorCode, RequestId};

/// The answer of `/health/live`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Live {
    /// Always `ok`.
    pub status: &'static str,
}

/// Liveness: the process answers. No I/O.
#[utoipa::path(get, path = "/api/v1/health/live", operation_id = "getLiveness", tag = "health", responses((status = 200, description = "The process is up", body = Live)))]
pub async fn live() -> Json<Live> {
    Json(Live { status: "ok" })
}

/// One readiness check.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Check {
    /// `app_pool`, `platform_pool`, `migrations`, `pgvector` or `jwks`.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// How long it took, in milliseconds.
    pub latency_ms: f64,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answer of `/health/ready`. When not ready (503) it also carries the error envelope's
/// `error` member (`SYS_001`, naming the failing checks), like every other error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ready {
    /// Present when not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    /// `ready`, or `not_ready` with status 503.
    pub status: &'static str,
    /// Every check.
    pub checks: Vec<Check>,
}

/// Readiness: both pools answer, migrations are at this binary's head, pgvector is installed,
/// the database accepts the tenant context's key, and the identity provider's keys were fetched (when one is configured). 503 names the failing
/// check.
#[utoipa::path(get, path = "/api/v1/health/ready", operation_id = "getReadiness", tag = "health",
    responses((status = 200, description = "Every check passed", body = Ready), (status = 503, description = "A check failed; `checks` names it", body = Ready)))]
pub async fn ready(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
) -> (StatusCode, Json<Ready>) {
    let inner = &state.inner;
    let mut checks = Vec::new();

    let started = Instant::now();
    let app = inner.app_pool.schema_state().await;
    let elapsed = ms(started);
    checks.push(Check {
        name: "app_pool",
        ok: app.is_ok(),
        latency_ms: elapsed,
        error: app.as_ref().err().map(|e| e.to_string()),
    });
    let (migrations, pgvector, context) = match &app {
        Ok(schema) => {
            let head = carevault_db::migrate::head_version();
            let migrations = (schema.migration_version == head)
                .then_some(())
                .ok_or_else(|| format!("database at version {}, this binary expects {head}", schema.migration_version));
            let pgvector =
                schema.pgvector_version.as_ref().map(|_| ()).ok_or_else(|| "pgvector is not installed".to_string());
            let context = schema.context_verified.then_some(()).ok_or_else(|| {
                "the database does not accept TENANT_CONTEXT_KEY: add it with `carevault context-key add`, and check \
                 that this host's clock and the database's agree"
                    .to_string()
            });
            (migrations, pgvector, context)
        }
        Err(_) => {
            let failed = || Err("app_pool failed".to_string());
            (failed(), failed(), failed())
        }
    };
    checks.push(Check { name: "migrations", ok: migrations.is_ok(), latency_ms: elapsed, error: migrations.err() });
    checks.push(Check { name: "pgvector", ok: pgvector.is_ok(), latency_ms: elapsed, error: pgvector.err() });
    checks.push(Check { name: "tenant_context", ok: context.is_ok(), latency_ms: elapsed, error: context.err() });

    let started = Instant::now();
    let platform = inner.platform_pool.ping().await;
    checks.push(Check {
        name: "platform_pool",
        ok: platform.is_ok(),
        latency_ms: ms(started),
        error: platform.err().map(|e| e.to_string()),
    });

    let started = Instant::now();
    // The start-up fetch may have failed while the IdP was down: retry, rate-limited (this
    // endpoint needs no token, so it must not be a way to make the server call the IdP at will).
    inner.auth.retry_keys().await;
    let jwks_ok = inner.auth.keys_ready();
    checks.push(Check {
        name: "jwks",
        ok: jwks_ok,
        latency_ms: ms(started),
        error: (!jwks_ok).then(|| "the identity provider's keys have not been fetched".to_string()),
    });

    let failing: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
    if failing.is_empty() {
        return (StatusCode::OK, Json(Ready { error: None, status: "ready", checks }));
    }
    let error = ErrorBody {
        code: ErrorCode::Sys001,
        message: format!("not ready: {}", failing.join(", ")),
        request_id: request_id.0,
        detail: None,
    };
    if inner.config.environment == Environment::Production {
        // Unauthenticated endpoint: names of failing checks only, no database error text.
        checks.iter_mut().for_each(|check| check.error = None);
    }
    (StatusCode::SERVICE_UNAVAILABLE, Json(Ready { error: Some(error), status: "not_ready", checks }))
}

fn ms(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}
