//! carevault's HTTP API: the axum router, authentication, the error envelope, the handlers and
//! the OpenAPI document. It never writes SQL: handlers reach tenant data through the
//! [`carevault_db::TenantTx`] that [`extract::Authed::begin`] opens for the caller (or a
//! [`carevault_db::PlatformTx`] on the platform API).
//!
//! The life of a request:
//!
//! 1. request id and client address → error envelope → panic catcher → timeout → CORS → body read
//!    in full (limit) → route;
//! 2. [`extract::Authed`]: the token is verified (no database), the user's and the tenant's rate
//!    limits are checked ([`rate_limit`]; 429 without touching the database), then the caller is resolved in a
//!    short tenant transaction of its own (tenant, user, just-in-time provisioning, role matrix),
//!    which is committed and its connection released; 401 and 403 come from here;
//! 3. the handler parses and validates its input (no connection held), then opens the tenant
//!    transaction it needs with `Authed::begin` (or several, one after the other), where every
//!    access to tenant data writes its audit row, and commits it.
//!
//! No pooled connection is held while a handler validates its input or waits on another service.

pub mod auth;
mod caller_cache;
mod config;
mod error;
pub mod extract;
pub mod handlers;
mod middleware;
pub mod openapi;
pub mod rate_limit;
pub mod schema;
pub mod server;
mod state;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use config::{ApiConfig, Environment, JitProvisioning};
pub use error::{ApiError, ErrorBody, ErrorCode, ErrorEnvelope};
pub use middleware::{ClientIp, RequestId};
pub use state::AppState;

/// The routes of the application, for [`with_layers`] (tests add their own before layering).
pub fn api_routes(state: &AppState) -> Router<AppState> {
    routes(&state.inner.config)
}

use handlers::{audit, documents, documents_batch, health, me, platform, users};

/// Where the API is mounted.
pub(crate) const API_PREFIX: &str = "/api/v1";

/// The bulk import route (under [`API_PREFIX`]): the only one with the `BATCH_*` body limit and
/// timeout ([`middleware::timeout`], [`middleware::buffer_body`]).
pub(crate) const DOCUMENTS_BATCH_ROUTE: &str = "/documents/batch";

/// The whole application: `/api/v1/...` and `/openapi.json`, with every layer.
pub fn router(state: AppState) -> Router {
    with_layers(routes(&state.inner.config), state)
}

/// The routes, without the layers.
fn routes(config: &ApiConfig) -> Router<AppState> {
    let mut api = Router::new()
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/auth/validate", get(me::validate))
        .route("/tenants/current", get(me::current_tenant))
        .route("/users", post(users::create).get(users::list))
        .route("/users/{id}", get(users::get).patch(users::update).delete(users::delete))
        .route("/users/{id}/restore", post(users::restore))
        .route("/documents", post(documents::create).get(documents::list))
        .route("/documents/search", post(documents::search))
        // The larger limit also for the extractor (axum's `Json` reads `DefaultBodyLimit`; the
        // innermost one wins).
        .route(
            DOCUMENTS_BATCH_ROUTE,
            post(documents_batch::batch).layer(DefaultBodyLimit::max(config.batch_max_body_bytes)),
        )
        .route("/documents/{id}", get(documents::get).patch(documents::update).delete(documents::delete))
        .route("/documents/{id}/restore", post(documents::restore))
        .route("/audit-logs", get(audit::list))
        .route("/audit-logs/checkpoints/latest", get(audit::latest_checkpoint));
    // Without PLATFORM_API_TOKEN the platform routes do not exist (404), rather than answering 401
    // to a credential nobody can have.
    if config.platform_api_token.is_some() {
        api = api
            .route("/platform/tenants", post(platform::create).get(platform::list))
            .route("/platform/tenants/{id}/suspend", post(platform::suspend))
            .route("/platform/tenants/{id}/activate", post(platform::activate))
            .route("/platform/tenants/{id}/jit-email-domains", put(platform::set_jit_email_domains));
    }
    let document = openapi::openapi_json(config.platform_api_token.is_some());
    Router::new()
        .nest(API_PREFIX, api)
        .route("/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], document) }))
}

/// Wraps `routes` in every layer of the application: request id and client address, error
/// envelope, panic catcher, timeout, CORS and body limit (the timeout and the body limit per
/// route: [`middleware::RequestLimits`]). Public so that tests (and embedders)
/// can add routes of their own under the same guarantees.
pub fn with_layers(routes: Router<AppState>, state: AppState) -> Router {
    let config = state.inner.config.clone();
    let cors = (!config.allowed_origins.is_empty()).then(|| cors_layer(&config.allowed_origins));
    routes
        .fallback(|| async { ApiError::new(ErrorCode::Req404).into_response() })
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::buffer_body))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(tower::util::option_layer(cors))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::timeout))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::finish_errors))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::request_context))
        .with_state(state)
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    let origin = if origins.iter().any(|o| o == "*") { AllowOrigin::any() } else { AllowOrigin::list(origins) };
    CorsLayer::new()
        .allow_origin(origin)
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, HeaderName::from_static("x-request-id")])
        .expose_headers([HeaderName::from_static("x-request-id")])
}
