//! The accept loop: a cap on connections, TCP_NODELAY, TLS with a handshake
//! deadline, HTTP/1.1 and HTTP/2 with head-size and head-time limits, and a
//! graceful shutdown that answers every request on a connection it accepted.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::front::{Api, Frontend};

/// How long, once shutdown has begun, a connection that has not yet
/// delivered a request may take to deliver its first one. Its client has
/// usually sent it already: closing the connection unanswered would leave
/// the client unsure whether a write happened.
const FIRST_REQUEST_WINDOW: Duration = Duration::from_secs(1);

/// Serves `front` on `listener` until `shutdown` resolves; then stops
/// accepting, answers every request on a connection it accepted (in-flight
/// ones, and the first request of connections that had none yet), within
/// the grace period, and returns.
pub async fn serve<A: Api>(
    front: Arc<Frontend<A>>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = front.limits().clone();
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let (stopping_tx, stopping) = watch::channel(false);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper answers 431 when a head does not fit this buffer.
        .max_buf_size(limits.max_head_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_head_bytes).unwrap_or(u32::MAX));
    let accepted = Accepted {
        front,
        builder: Arc::new(builder),
        tls,
        connections: Arc::clone(&connections),
        stopping,
        handshake_deadline: limits.header_read_timeout,
    };
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tracing::warn!(target: "todo::http", %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        accepted.spawn(stream, peer);
    }
    stopping_tx.send_replace(true);
    // Connections the kernel completed before we stopped carry requests
    // their clients already sent: serve them instead of resetting them.
    loop {
        tokio::select! {
            biased;
            Ok((stream, peer)) = listener.accept() => accepted.spawn(stream, peer),
            () = std::future::ready(()) => break,
        }
    }
    drop(listener);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    tokio::select! {
        _ = connections.acquire_many(all) => tracing::info!(target: "todo::http", "all connections closed"),
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(target: "todo::http", "shutdown grace period over; closing the rest");
        }
    }
}

/// What each accepted connection needs.
struct Accepted<A: Api> {
    front: Arc<Frontend<A>>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    tls: Option<TlsAcceptor>,
    connections: Arc<Semaphore>,
    stopping: watch::Receiver<bool>,
    handshake_deadline: Duration,
}

impl<A: Api> Accepted<A> {
    fn spawn(&self, stream: TcpStream, peer: SocketAddr) {
        let Ok(permit) = Arc::clone(&self.connections).try_acquire_owned() else {
            tracing::warn!(target: "todo::http", %peer, "connection limit reached; closing");
            return;
        };
        // Without it every small response waits for delayed ACKs (~40 ms).
        let _ = stream.set_nodelay(true);
        let front = Arc::clone(&self.front);
        let builder = Arc::clone(&self.builder);
        let tls = self.tls.clone();
        let stopping = self.stopping.clone();
        let handshake_deadline = self.handshake_deadline;
        tokio::spawn(async move {
            let _permit = permit;
            // A permit once the connection has delivered a request.
            let served = Arc::new(Notify::new());
            let seen = Arc::clone(&served);
            let service = service_fn(move |request: Request<Incoming>| {
                let front = Arc::clone(&front);
                seen.notify_one();
                async move {
                    let request = request.map(|body| body.map_err(Into::into).boxed_unsync());
                    Ok::<_, Infallible>(front.handle(request, peer.ip()).await)
                }
            });
            match tls {
                Some(acceptor) => {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(handshake_deadline, acceptor.accept(stream)).await
                    else {
                        return;
                    };
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    drive(connection, &served, stopping).await;
                }
                None => {
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    drive(connection, &served, stopping).await;
                }
            }
        });
    }
}

/// Serves a connection until it ends or shutdown begins; then lets it
/// deliver its first request if it had none yet, and closes it gracefully:
/// requests in flight are answered (HTTP/1.1 with `Connection: close`,
/// HTTP/2 with GOAWAY).
async fn drive<C: GracefulConnection>(
    connection: C,
    served: &Notify,
    mut stopping: watch::Receiver<bool>,
) {
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = stopping.wait_for(|stopping| *stopping) => {}
    }
    tokio::select! {
        _ = connection.as_mut() => return,
        () = served.notified() => {}
        () = tokio::time::sleep(FIRST_REQUEST_WINDOW) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
