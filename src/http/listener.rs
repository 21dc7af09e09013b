//! The accept loop: each connection is served by hyper's HTTP/1.1 + HTTP/2 builder with the
//! `[http]` limits, which `axum::serve` cannot set.
//!
//! - A client that trickles its request head (slowloris) is cut off at
//!   `header_read_timeout_ms`; other connections never wait for it.
//! - A head with more than `max_headers` headers, or larger than `max_header_bytes`, gets 431
//!   from hyper before any handler sees it.
//! - HTTP/2 (cleartext, prior knowledge) gets a header-list limit, a cap on concurrent streams
//!   and on reset streams, and the patched `h2` closes a connection that floods CONTINUATION
//!   frames (RUSTSEC-2024-0332).
//!
//! On shutdown the listener stops accepting, idle connections close, and requests in flight
//! finish; upgraded WebSockets run on in their own tasks until the gateway stops them.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::config::HttpEdgeConfig;

/// Reset streams a client may have pending on one HTTP/2 connection before it is closed
/// (the rapid-reset flood, CVE-2023-44487).
const MAX_PENDING_RESET_STREAMS: usize = 20;

/// The connection builder for these settings.
fn builder(edge: &HttpEdgeConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let header_bytes = edge.max_header_bytes.get();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(edge.header_read_timeout_ms.max(1)))
        .max_headers(edge.max_headers.max(1))
        .max_buf_size(header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(edge.http2_max_concurrent_streams.max(1))
        .max_pending_accept_reset_streams(MAX_PENDING_RESET_STREAMS)
        .keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// Serves `router` on `listener` until `shutdown` resolves, then waits for the connections
/// still open to finish their requests (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    edge: &HttpEdgeConfig,
    shutdown: impl Future<Output = ()> + Send,
) {
    let builder = builder(edge);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "Accepting a connection failed.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "Could not set TCP_NODELAY.");
        }
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Resets, timeouts and malformed requests end one client's connection only.
            if let Err(error) = connection.await {
                tracing::debug!(%error, "A connection ended with an error.");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
