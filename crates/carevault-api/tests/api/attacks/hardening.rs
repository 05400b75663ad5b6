//! Attempts of the catalogue that need a server configured as a careful production deployment
//! would be (issue 13): just-in-time provisioning by domain, a small per-user rate limit, a short
//! header-read timeout and a connection cap. They run against a second application and are
//! recorded in the same catalogue.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use carevault_api::JitProvisioning;
use carevault_api::rate_limit::RateLimits;
use carevault_api::server::ConnectionLimits;
use carevault_db::UserRole;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::{Body, Catalogue, Entry, Expect};
use crate::helpers::{PLATFORM_TOKEN, TestApp, read_until_closed};

const USER_PER_MINUTE: u32 = 5;
const CONNECTIONS: usize = 4;

/// Runs the attempts and appends them to `entries`.
pub(super) async fn attempts(entries: &mut Vec<Entry>) {
    let app = TestApp::spawn_with(|config, _| {
        config.jit_provisioning = JitProvisioning::Domains;
        config.rate_limits = RateLimits { user_per_minute: NonZeroU32::new(USER_PER_MINUTE), tenant_per_minute: None };
        config.connections = ConnectionLimits {
            header_read_timeout: Duration::from_secs(1),
            max_connections: CONNECTIONS,
            ..ConnectionLimits::default()
        };
    })
    .await;
    let tenant = app.tenant("A").await;
    let path = format!("/api/v1/platform/tenants/{tenant}/jit-email-domains");
    let set = app.call("PUT", &path, Some(PLATFORM_TOKEN), Some(json!({"domains": ["a.test"]}))).await;
    assert_eq!(set.status, 200, "{}", set.body);
    let mut c = Catalogue { app: &app, secrets: Vec::new(), entries: std::mem::take(entries) };

    // --- Sign-up through a tenant claim the attacker chose ---------------------------------------
    for (sub, email, expect) in [
        ("mallory", "mallory@evil.test", Expect::Error(403, "AUTH_010")),
        ("mallory-sub", "mallory@lab.a.test", Expect::Error(403, "AUTH_010")),
        ("mallory-suffix", "mallory@a.test.evil.test", Expect::Error(403, "AUTH_010")),
        ("newcomer", "newcomer@a.test", Expect::Ok(200)),
    ] {
        let token = app.token(tenant, sub, Some(email));
        let category = "jit provisioning (domains: a.test)";
        c.attack(category, "GET", "/api/v1/auth/validate", Some(&token), &[], Body::None, expect).await;
        if let Some(last) = c.entries.last_mut() {
            last.request.push_str(&format!(" (a new sub of tenant A, verified email {email})"));
        }
    }

    // --- One user floods the API (and the append-only audit log) ---------------------------------
    let flooder = app.caller(tenant, UserRole::Viewer, "flooder").await;
    let audit_before = app.row_counts().await.3;
    let (mut served, mut refused, mut with_retry_after) = (0, 0, 0);
    for _ in 0..20 {
        let reply =
            app.client.get(app.url("/api/v1/tenants/current")).bearer_auth(&flooder.token).send().await.unwrap();
        match reply.status().as_u16() {
            200 => served += 1,
            429 => {
                refused += 1;
                with_retry_after += usize::from(reply.headers().contains_key("retry-after"));
            }
            _ => {}
        }
    }
    let audit_rows = app.row_counts().await.3 - audit_before;
    c.record(
        "rate limit",
        format!("20 × GET /api/v1/tenants/current by one user (RATE_LIMIT_USER_PER_MINUTE={USER_PER_MINUTE})"),
        "200: 5, 429 REQ_429: 15 (with Retry-After: 15), audit rows written: 5",
        format!(
            "200: {served}, 429 REQ_429: {refused} (with Retry-After: {with_retry_after}), audit rows written: {audit_rows}"
        ),
    );

    // --- Slow clients hold connections (slowloris) -----------------------------------------------
    let started = Instant::now();
    let mut held = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut stream = app.connect().await;
        stream.write_all(b"GET /api/v1/health/live HTTP/1.1\r\nHost: carevault\r\nX-Slow: ").await.unwrap();
        held.push(stream);
    }
    let mut closed = 0;
    for stream in &mut held {
        closed += usize::from(read_until_closed(stream, Duration::from_secs(5)).await.is_some());
    }
    let live = app.client.get(app.url("/api/v1/health/live")).send().await.map(|r| r.status().as_u16());
    c.record(
        "slow clients",
        format!(
            "{CONNECTIONS} connections each send half a request head and stop (MAX_CONNECTIONS={CONNECTIONS}, \
             HEADER_READ_TIMEOUT_SECONDS=1), then a normal request"
        ),
        "closed by the server within 5 s: 4 of 4; the next request: 200",
        format!(
            "closed by the server within 5 s: {closed} of {CONNECTIONS} (after {:.1} s); the next request: {}",
            started.elapsed().as_secs_f32(),
            live.map_or_else(|e| format!("failed: {e}"), |s| s.to_string())
        ),
    );
    // `record` compares the whole text: keep the timing out of the comparison.
    if let Some(last) = c.entries.last_mut() {
        last.passed = last.observed.starts_with(&format!("closed by the server within 5 s: {CONNECTIONS} of"))
            && last.observed.ends_with("the next request: 200");
    }
    *entries = c.entries;
}
