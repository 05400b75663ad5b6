//! Round trips between the server and PostgreSQL per request, counted on the wire: the tenant
//! path's pool connects through a proxy that counts how often the client starts talking again
//! after the server answered (a pipelined batch is one round trip). The figure is part of the
//! request's latency that no index can remove; it is pinned here so that a change shows.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use carevault_db::{PoolConfig, UserRole};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};

use crate::helpers::{TestApp, document_body};

/// Client turns seen by the proxy, over all its connections.
#[derive(Clone, Default)]
struct RoundTrips(Arc<AtomicUsize>);

impl RoundTrips {
    fn take(&self) -> usize {
        self.0.swap(0, Ordering::SeqCst)
    }
}

/// Listens on 127.0.0.1 and forwards each connection to the Unix socket of `url` (the test
/// cluster's `?host=<dir>&port=<port>`); returns the proxied URL and the counter.
async fn proxy(url: &str, counter: RoundTrips) -> String {
    let parsed = url::Url::parse(url).unwrap();
    let query: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
    let socket = format!("{}/.s.PGSQL.{}", query["host"], query["port"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (client, _) = listener.accept().await.unwrap();
            let server = UnixStream::connect(&socket).await.unwrap();
            let (counter, client_spoke_last) = (counter.clone(), Arc::new(AtomicUsize::new(0)));
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            let spoke = Arc::clone(&client_spoke_last);
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 65536];
                while let Ok(n @ 1..) = client_read.read(&mut buffer).await {
                    // A new turn when the server spoke last (or at the start).
                    if spoke.swap(1, Ordering::SeqCst) == 0 {
                        counter.0.fetch_add(1, Ordering::SeqCst);
                    }
                    if server_write.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 65536];
                while let Ok(n @ 1..) = server_read.read(&mut buffer).await {
                    client_spoke_last.store(0, Ordering::SeqCst);
                    if client_write.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let user = parsed.username();
    let database = parsed.path().trim_start_matches('/');
    format!("postgres://{user}@127.0.0.1:{port}/{database}?sslmode=disable")
}

/// Round trips of the second authenticated `GET /documents/{id}` of a member, on a server with
/// `caller_cache_ttl`.
async fn read_round_trips(caller_cache_ttl: Duration) -> usize {
    let counter = RoundTrips::default();
    let one_connection =
        PoolConfig { max_connections: 1, acquire_timeout: Duration::from_secs(5), ..PoolConfig::default() };
    let proxied = counter.clone();
    let app = TestApp::spawn_full(
        |config, _| config.caller_cache_ttl = caller_cache_ttl,
        one_connection,
        |r| r,
        |url| async move { proxy(&url, proxied).await },
    )
    .await;
    let tenant = app.tenant("Clinic").await;
    let member = app.caller(tenant, UserRole::Member, "member").await;
    let created = app.call("POST", "/api/v1/documents", Some(&member.token), Some(document_body("a.pdf", None))).await;
    let path = format!("/api/v1/documents/{}", created.body["id"].as_str().unwrap());
    // Warm: the connection is open, the statements are prepared, the caller remembered.
    assert_eq!(app.call("GET", &path, Some(&member.token), None).await.status, 200);
    // The connection goes back to the pool after the response: let that finish.
    tokio::time::sleep(Duration::from_millis(200)).await;
    counter.take();
    assert_eq!(app.call("GET", &path, Some(&member.token), None).await.status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    counter.take()
}

#[tokio::test]
async fn an_authenticated_document_read_takes_four_round_trips() {
    // 4, seen on the wire: `BEGIN` and `carevault_enter_tenant` (the pinned settings, the role
    // and the proof, bound to the connection) in one simple-protocol message; the read and its
    // audit row in one statement; COMMIT; and the Sync-only exchange sqlx's pool sends when the
    // connection comes back to it (`sqlx-core` `return_to_pool` pings every released
    // connection; we add no check of our own). The caller was remembered (`CALLER_CACHE_SECONDS`).
    // Before issue 12: 17.
    assert_eq!(read_round_trips(Duration::from_secs(60)).await, 4, "round trips of an authenticated GET");
    // Without the caller cache, authentication adds its own transaction: BEGIN and the proof;
    // the tenant and the user in one lookup; COMMIT; the pool's ping.
    assert_eq!(read_round_trips(Duration::ZERO).await, 8, "round trips without the caller cache");
}
