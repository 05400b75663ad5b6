//! What one client may take: connections held with half-sent requests, idle keep-alive
//! connections (`carevault_api::server`), and requests per minute of a user and of a tenant
//! (`carevault_api::rate_limit`).

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use carevault_api::rate_limit::RateLimits;
use carevault_api::server::ConnectionLimits;
use carevault_db::UserRole;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TestApp, read_until_closed};

/// Long enough that the checks made before it passes (a few local round trips) fit on a stalled
/// CI machine, short enough for a test.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
const WRITE_STALL: Duration = Duration::from_secs(1);

async fn app_with_connection_limits(max_connections: usize) -> TestApp {
    TestApp::spawn_with(|config, _| {
        config.connections =
            ConnectionLimits { header_read_timeout: HEAD_TIMEOUT, write_stall_timeout: WRITE_STALL, max_connections };
    })
    .await
}

#[tokio::test]
async fn half_sent_requests_are_closed_after_the_header_read_timeout_and_the_cap_holds() {
    let app = app_with_connection_limits(3).await;
    let started = Instant::now();
    let mut half_sent = Vec::new();
    for _ in 0..3 {
        let mut stream = app.connect().await;
        // A request head without its final empty line: the server waits for the rest.
        stream.write_all(b"GET /api/v1/health/live HTTP/1.1\r\nHost: carevault\r\n").await.unwrap();
        half_sent.push(stream);
    }
    // The cap is reached: a complete request on a fourth connection waits (in the listen backlog).
    let mut fourth = app.connect().await;
    fourth
        .write_all(b"GET /api/v1/health/live HTTP/1.1\r\nHost: carevault\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(500), fourth.read(&mut buffer)).await;
    assert!(early.is_err(), "a fourth connection was served while three were open: {early:?}");

    // The server closes each half-sent request's connection once the timeout passes…
    for stream in &mut half_sent {
        let answer = read_until_closed(stream, Duration::from_secs(5)).await;
        assert!(answer.is_some(), "a half-sent request still holds its connection after 5 s");
    }
    let closed_after = started.elapsed();
    assert!(closed_after >= HEAD_TIMEOUT, "closed after {closed_after:?}, before the timeout");
    // …and the waiting connection is then served.
    let answer = read_until_closed(&mut fourth, Duration::from_secs(5)).await.expect("the fourth connection is served");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
    let app = app_with_connection_limits(8).await;
    let mut stream = app.connect().await;
    stream.write_all(b"GET /api/v1/health/live HTTP/1.1\r\nHost: carevault\r\n\r\n").await.unwrap();
    let mut buffer = [0u8; 4096];
    let n = stream.read(&mut buffer).await.unwrap();
    assert!(buffer[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buffer[..n]));
    // Kept alive, then idle: closed once no request head arrives within the timeout.
    let idle_since = Instant::now();
    let rest = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(rest.is_some(), "an idle keep-alive connection is still open after 5 s");
    assert!(idle_since.elapsed() >= HEAD_TIMEOUT.mul_f32(0.9), "closed after {:?}", idle_since.elapsed());
}

#[tokio::test]
async fn a_client_that_never_reads_its_answers_loses_its_connection() {
    let app = app_with_connection_limits(1).await;
    // A small receive window, and requests pipelined without ever reading: the server's writes
    // stall once the socket buffers are full.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address = app.base.trim_start_matches("http://").parse().unwrap();
    let mut greedy = socket.connect(address).await.unwrap();
    let writer = tokio::spawn(async move {
        let request = b"GET /api/v1/health/live HTTP/1.1\r\nHost: carevault\r\n\r\n".repeat(1000);
        // Ends when the server closes the connection (a write fails); a write that blocks for
        // good (the server keeps the connection) ends the wait after 20 s.
        tokio::time::timeout(Duration::from_secs(20), async { while greedy.write_all(&request).await.is_ok() {} })
            .await
            .ok()
    });
    let closed_after = writer.await.unwrap();
    assert!(closed_after.is_some(), "a client that never reads kept its connection for 20 s");
    // The only place under the cap is free again: a normal request is served.
    let mut next = app.connect().await;
    next.write_all(b"GET /api/v1/health/live HTTP/1.1\r\nHost: carevault\r\nConnection: close\r\n\r\n").await.unwrap();
    let answer = read_until_closed(&mut next, Duration::from_secs(5)).await.expect("the next client is served");
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
}

#[tokio::test]
async fn rate_limits_refuse_with_429_and_retry_after_and_write_nothing() {
    let app = TestApp::spawn_with(|config, _| {
        config.rate_limits = RateLimits { user_per_minute: NonZeroU32::new(3), tenant_per_minute: NonZeroU32::new(5) };
    })
    .await;
    let tenant = app.tenant("Limited").await;
    let other_tenant = app.tenant("Other").await;
    let first = app.caller(tenant, UserRole::Viewer, "first-user").await;
    let second = app.caller(tenant, UserRole::Viewer, "second-user").await;
    let elsewhere = app.caller(other_tenant, UserRole::Viewer, "elsewhere").await;
    let get = |token: &str| app.client.get(app.url("/api/v1/tenants/current")).bearer_auth(token).send();

    // The user's bucket: three requests, then 429 until it refills (one every 20 s).
    for _ in 0..3 {
        assert_eq!(get(&first.token).await.unwrap().status(), 200);
    }
    let before = app.row_counts().await;
    let refused = get(&first.token).await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry_after), "Retry-After {retry_after}");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "REQ_429");
    assert!(body["error"]["message"].as_str().unwrap().contains("user"), "{body}");
    assert_eq!(app.row_counts().await, before, "a refused request wrote something (an audit row?)");

    // The tenant's bucket: the first user's refused request did not take from it, so the second
    // user has two requests left of the tenant's five.
    for _ in 0..2 {
        assert_eq!(get(&second.token).await.unwrap().status(), 200);
    }
    let refused = get(&second.token).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("tenant"), "{body}");

    // Another tenant is not affected.
    assert_eq!(get(&elsewhere.token).await.unwrap().status(), 200);
}
