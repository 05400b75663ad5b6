//! The connection loop: HTTP/1.1 on hyper with a header-read timeout and a cap on open
//! connections, so that slow or half-open clients cannot hold the server's file descriptors.
//!
//! `axum::serve` gives hyper no timer, and hyper's header-read timeout only runs with one
//! (`hyper::server::conn::http1::Builder::header_read_timeout`: "requires a Timer"): behind it, a
//! client that sends half a request head keeps its connection, and its descriptor, forever. Here:
//!
//! * **Header-read timeout** ([`ConnectionLimits::header_read_timeout`]): the whole request head
//!   must arrive within it, or hyper closes the connection. hyper starts the same timer when it
//!   waits for the next request on a kept-alive connection, so it also bounds how long an idle
//!   keep-alive connection stays open.
//! * **Write stall timeout** ([`ConnectionLimits::write_stall_timeout`]): an answer the client
//!   takes no byte of for that long closes the connection (module `write_stall`), so a client that
//!   never reads cannot hold its place either.
//! * **Connection cap** ([`ConnectionLimits::max_connections`]): at the cap the loop stops
//!   accepting until a connection closes; further clients wait in the kernel's listen backlog
//!   instead of taking a descriptor each.
//! * **Request time** is bounded by the application's timeout layer (`REQUEST_TIMEOUT_SECONDS`),
//!   which covers reading the body, as the handlers read it.
//!
//! Shutdown stops accepting, asks every connection to finish its request in flight and close
//! (hyper's graceful shutdown), and returns when all are closed: within the request timeout plus
//! the write stall timeout, since every connection is then in flight, idle (closed at once) or
//! within its header or write bounds. The binary bounds that wait once more.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use self::write_stall::WriteStall;

mod write_stall;

/// Default of `HEADER_READ_TIMEOUT_SECONDS`.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `WRITE_STALL_TIMEOUT_SECONDS`.
pub const DEFAULT_WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of `MAX_CONNECTIONS`: well below the usual 1,024 open files of a process, which also
/// has its database connections and files to keep.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// How many connections the server keeps open, how long a client may take to send a request head,
/// and how long it may leave an answer untaken (`HEADER_READ_TIMEOUT_SECONDS`, `MAX_CONNECTIONS`,
/// `WRITE_STALL_TIMEOUT_SECONDS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A request head (request line and headers) must arrive within this, counted from the moment
    /// the server waits for it: on a new connection, and between requests on a kept-alive one.
    pub header_read_timeout: Duration,
    /// A write to the client that makes no progress for this long closes the connection.
    pub write_stall_timeout: Duration,
    /// At most this many connections are open at once; more wait to be accepted.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            write_stall_timeout: DEFAULT_WRITE_STALL_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then waits until every open connection
/// has finished its request in flight and closed. Each request carries the peer's
/// [`ConnectInfo<std::net::SocketAddr>`], as `into_make_service_with_connect_info` would give it.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&open).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // closed: never happens, the semaphore lives here
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Responses go out as soon as they are written, not held back by Nagle's algorithm
        // waiting for the client's delayed ACK of the previous segment.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, "cannot set TCP_NODELAY: {error}");
        }
        let service = app.clone().map_request(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
        let io = TokioIo::new(WriteStall::new(stream, limits.write_stall_timeout));
        let connection = graceful.watch(http.serve_connection(io, TowerToHyperService::new(service)));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                // A client that went away or timed out: not the server's fault, and not news.
                tracing::debug!(%peer, "connection ended: {error}");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// An `accept` that failed. Errors of one connection (reset before it was accepted) are skipped;
/// others, such as running out of file descriptors (EMFILE), would fail again at once: wait a
/// little, as `axum::serve` does, instead of spinning.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(error.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!("accepting a connection failed: {error}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
