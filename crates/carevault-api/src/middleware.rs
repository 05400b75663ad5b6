//! Request-wide middleware: the request id, the client address, and the error envelope.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{CONTENT_TYPE, HeaderValue};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ErrorBody, ErrorEnvelope};
use crate::{ApiConfig, ApiError, AppState, Environment, ErrorCode};

/// The request id of a request (docs/ARCHITECTURE.md, "Middleware").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The client's address: the peer, or the first untrusted address of `X-Forwarded-For` when the
/// peer is a trusted proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

const REQUEST_ID: &str = "x-request-id";

/// Accepts an incoming `X-Request-ID` of 1–64 characters of `[A-Za-z0-9._-]`, or generates a
/// UUID; stores it for handlers and logs and returns it in the response header. Also resolves the
/// client address.
pub async fn request_context(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_valid_request_id(id))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    let client = client_ip(peer, request.headers(), &state.inner.config.trusted_proxies);
    request.extensions_mut().insert(RequestId(request_id.clone()));
    request.extensions_mut().insert(ClientIp(client));

    let span = tracing::info_span!("request", request_id = %request_id, method = %request.method());
    let mut response = {
        let _entered = span.enter();
        // Only the path (ids, never PHI) is logged; never the query string, headers or body.
        tracing::info!(path = request.uri().path(), "request");
        drop(_entered);
        next.run(request).await
    };
    tracing::info!(parent: &span, status = response.status().as_u16(), "response");
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

fn is_valid_request_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The client address: `X-Forwarded-For` is believed only when the peer is a trusted proxy, and
/// then read from the right, skipping trusted proxies (the left part is whatever the client sent).
fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer?;
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    for entry in entries.into_iter().rev() {
        // An entry we cannot read (`ip:port`, garbage) ends the walk: skipping it would let the
        // client's own left-hand entries through.
        let Ok(ip) = entry.parse::<IpAddr>() else { return Some(peer) };
        if !is_trusted(&ip) {
            return Some(ip);
        }
    }
    Some(peer)
}

/// Renders every error response as the envelope: [`ApiError`]s recorded by handlers and
/// extractors, and the bare statuses produced by axum itself (unknown route, wrong method) or by
/// layers (body limit, timeout).
pub async fn finish_errors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let request_id = request.extensions().get::<RequestId>().map(|id| id.0.clone()).unwrap_or_default();
    let mut response = next.run(request).await;
    let error = match response.extensions_mut().remove::<ApiError>() {
        Some(error) => error,
        None => {
            let status = response.status();
            let is_json =
                response.headers().get(CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
            // A handler's own JSON error body (readiness) is kept; bare statuses from axum and
            // the layers become the envelope.
            if is_json || !(status.is_client_error() || status.is_server_error()) {
                return response;
            }
            ApiError::new(code_for_bare_status(status))
        }
    };
    render(error, request_id, state.inner.config.environment, response.headers())
}

fn code_for_bare_status(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::NOT_FOUND => ErrorCode::Req404,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::Req405,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::Req413,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::Req415,
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => ErrorCode::Sys005,
        StatusCode::BAD_REQUEST => ErrorCode::Val001,
        StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::Val003,
        StatusCode::UNAUTHORIZED => ErrorCode::Auth001,
        StatusCode::FORBIDDEN => ErrorCode::Auth009,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Sys001,
        _ => ErrorCode::Sys003,
    }
}

fn render(error: ApiError, request_id: String, environment: Environment, headers: &HeaderMap) -> Response {
    let detail = if environment == Environment::Production { None } else { error.detail };
    let retry_after = error.retry_after;
    let envelope = ErrorEnvelope {
        error: ErrorBody { code: error.code, message: error.message.into_owned(), request_id, detail },
    };
    let body = serde_json::to_vec(&envelope).unwrap_or_default();
    let mut response = (error.code.status(), Body::from(body)).into_response();
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    // Keep what layers set that still matters (Allow on 405, CORS headers).
    for name in [
        "allow",
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-expose-headers",
        "vary",
    ] {
        if let Some(value) = headers.get(name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

/// The body limit and the timeout of one request. Every route has `MAX_BODY_BYTES` and
/// `REQUEST_TIMEOUT_SECONDS` except `POST /documents/batch`, which takes the `BATCH_*` ones: both
/// are decided here, before routing, because the body is read and the clock started before the
/// router knows the route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestLimits {
    /// The largest body read.
    pub body_bytes: usize,
    /// How long the whole request may run.
    pub timeout: Duration,
}

impl RequestLimits {
    /// The limits of a request to `method` `path` (the full path, `/api/v1/...`).
    pub(crate) fn of(config: &ApiConfig, method: &Method, path: &str) -> RequestLimits {
        let is_batch =
            method == Method::POST && path.strip_prefix(crate::API_PREFIX) == Some(crate::DOCUMENTS_BATCH_ROUTE);
        if is_batch {
            RequestLimits { body_bytes: config.batch_max_body_bytes, timeout: config.batch_request_timeout }
        } else {
            RequestLimits { body_bytes: config.max_body_bytes, timeout: config.request_timeout }
        }
    }
}

/// Answers 504 `SYS_005` when the request runs longer than its [`RequestLimits::timeout`] (the
/// future is dropped, which rolls back an open transaction when its connection returns to the
/// pool).
pub async fn timeout(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limits = RequestLimits::of(&state.inner.config, request.method(), request.uri().path());
    match tokio::time::timeout(limits.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(ErrorCode::Sys005).into_response(),
    }
}

/// Reads the whole body (up to its [`RequestLimits::body_bytes`]) before routing, so that a body too large or
/// broken is refused (413, 400) before authentication does any work, and a handler never waits on
/// a trickling client. (Holding no pooled connection meanwhile no longer depends on it: [`Authed`]
/// releases its connection before the handler runs, and handlers open their transactions after
/// reading their input.)
///
/// [`Authed`]: crate::extract::Authed
///
/// A route with a larger limit than `MAX_BODY_BYTES` (the batch import) reads its body only for a
/// caller whose token verifies: otherwise anyone could make the server hold that much memory per
/// connection, for that route's longer timeout, without an account.
pub async fn buffer_body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = RequestLimits::of(&state.inner.config, request.method(), request.uri().path()).body_bytes;
    let (parts, body) = request.into_parts();
    if limit > state.inner.config.max_body_bytes {
        let Some(token) = crate::extract::bearer(&parts) else {
            return ApiError::new(ErrorCode::Auth001).into_response();
        };
        if let Err(error) = state.inner.auth.verify(token).await {
            return ApiError::from(error).into_response();
        }
    }
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        // axum reports the limit as "length limit exceeded"; anything else is a broken upload.
        Err(error) if error.to_string().contains("length limit") => {
            return ApiError::new(ErrorCode::Req413).into_response();
        }
        Err(_) => {
            return ApiError::new(ErrorCode::Val001).with_message("the request body could not be read").into_response();
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

/// A panic becomes a 500 `SYS_003` (logged, never shown).
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    tracing::error!(panic = %message, backtrace = %std::backtrace::Backtrace::force_capture(), "handler panicked");
    ApiError::new(ErrorCode::Sys003).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_batch_route_takes_the_batch_limits() {
        let config = ApiConfig {
            max_body_bytes: 10,
            request_timeout: Duration::from_secs(1),
            batch_max_body_bytes: 20,
            batch_request_timeout: Duration::from_secs(2),
            ..ApiConfig::default()
        };
        let normal = RequestLimits { body_bytes: 10, timeout: Duration::from_secs(1) };
        let batch = RequestLimits { body_bytes: 20, timeout: Duration::from_secs(2) };
        assert_eq!(RequestLimits::of(&config, &Method::POST, "/api/v1/documents/batch"), batch);
        for (method, path) in [
            (Method::POST, "/api/v1/documents"),
            (Method::GET, "/api/v1/documents/batch"),
            (Method::PATCH, "/api/v1/documents/batch"),
            (Method::POST, "/api/v1/documents/batch/"),
            (Method::POST, "/documents/batch"),
            (Method::POST, "/api/v1/documents/search"),
            (Method::POST, "/api/v2/documents/batch"),
        ] {
            assert_eq!(RequestLimits::of(&config, &method, path), normal, "{method} {path}");
        }
    }

    #[test]
    fn request_ids_are_short_and_plain() {
        assert!(is_valid_request_id("abc-123_x.y"));
        assert!(!is_valid_request_id(""));
        assert!(!is_valid_request_id(&"a".repeat(65)));
        assert!(!is_valid_request_id("a b"));
        assert!(!is_valid_request_id("<script>"));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6, 203.0.113.7, 10.0.0.2"));
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        // Through the trusted proxy: the rightmost untrusted address, not the spoofable leftmost.
        assert_eq!(client_ip(Some(proxy), &headers, &trusted), Some("203.0.113.7".parse().unwrap()));
        // From anyone else the header is ignored.
        assert_eq!(client_ip(Some(stranger), &headers, &trusted), Some(stranger));
        assert_eq!(client_ip(Some(stranger), &headers, &[]), Some(stranger));
        // An entry the proxy wrote that we cannot read ends the walk at the proxy itself.
        headers.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6, 203.0.113.7:5555"));
        assert_eq!(client_ip(Some(proxy), &headers, &trusted), Some(proxy));
    }
}
