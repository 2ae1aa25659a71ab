//! Accepting connections: HTTP/1.1 and HTTP/2 (hyper-util auto), optional TLS
//! (tokio-rustls, ALPN h2 + http/1.1), a cap on concurrent connections for the whole process
//! and per client address ([`slots`]), header and idle timeouts — a connection with no
//! request in flight for `idle_timeout` is closed, with GOAWAY on HTTP/2 ([`conn`]) — and
//! graceful shutdown that lets in-flight requests finish within a bound.
//!
//! [`run`] takes an already bound listener and a shutdown future (tokio mini-redis
//! `server::run`), so tests bind `127.0.0.1:0` and run the whole proxy in-process.
//! [`run_ops`] serves `/healthz`, `/readyz` and `/metrics` on a listener of its own, with
//! slots of its own, so load on the registry listener cannot lock the probes out.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

mod conn;
mod idle;
pub mod slots;

use crate::clientauth::TlsClient;
use crate::config::TlsFiles;
use crate::proxy::{self, AppState};
use conn::{idle_check_interval, Activity, Tracked};
use idle::IdleIo;
pub use slots::ConnectionSlots;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot load TLS {what} from {path}: {reason}")]
    Tls {
        what: &'static str,
        path: String,
        reason: String,
    },
}

/// Builds the listener's TLS acceptor from PEM files. With a `client_ca` in `auth`, client
/// certificates are verified by rustls-webpki against it: required when no per-request
/// method (htpasswd, tokens) is configured, optional otherwise.
pub fn tls_acceptor(
    files: &TlsFiles,
    auth: Option<&crate::clientauth::ClientAuth>,
) -> Result<TlsAcceptor, ServerError> {
    let err = |what, path: &Path, reason: String| ServerError::Tls {
        what,
        path: path.display().to_string(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| err("certificate", &files.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(err(
            "certificate",
            &files.cert,
            "no certificate found".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| err("key", &files.key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| err("configuration", &files.cert, e.to_string()))?;
    let builder = match auth.and_then(|a| a.client_ca.as_deref().map(|ca| (a, ca))) {
        None => builder.with_no_client_auth(),
        Some((auth, ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| err("client CA", ca, e.to_string()))?;
            for c in cas {
                roots
                    .add(c)
                    .map_err(|e| err("client CA", ca, e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(err("client CA", ca, "no certificate found".into()));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = if auth.has_request_methods() {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| err("client CA", ca, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| err("certificate/key pair", &files.cert, e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Serves the proxy on `listener` until `shutdown` completes, then stops accepting and gives
/// in-flight requests up to `limits.shutdown_grace` to finish. TLS is used when the
/// configuration has a `[tls]` section. The connection caps are this listener's own; a
/// process with several listeners shares one [`ConnectionSlots`] through [`run_with`].
pub async fn run(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let l = &state.config.limits;
    let slots = ConnectionSlots::new(l.max_connections, l.max_connections_per_peer);
    run_with(state, listener, slots, shutdown).await
}

/// [`run`] with connection slots shared with other listeners.
pub async fn run_with(
    state: Arc<AppState>,
    listener: TcpListener,
    slots: Arc<ConnectionSlots>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let tls = state
        .config
        .tls
        .as_ref()
        .map(|t| tls_acceptor(t, state.config.client_auth.as_ref()))
        .transpose()?;
    let st = state.clone();
    let handler = move |req: Request<Incoming>, peer: SocketAddr| {
        let st = st.clone();
        async move { proxy::handle(st, req, peer).await }
    };
    accept_loop(&state, listener, tls, slots, handler, shutdown).await;
    Ok(())
}

/// Slots of the ops listener: probes and scrapes need few, and get them whatever the
/// registry listener is doing.
const OPS_MAX_CONNECTIONS: usize = 32;
const OPS_MAX_CONNECTIONS_PER_PEER: usize = 8;

/// Serves the operator endpoints (`/healthz`, `/readyz`, `/metrics`) on `listener`, plain
/// HTTP, until `shutdown` completes. Everything else is 404.
pub async fn run_ops(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let slots = ConnectionSlots::new(OPS_MAX_CONNECTIONS, OPS_MAX_CONNECTIONS_PER_PEER);
    let st = state.clone();
    let handler = move |req: Request<Incoming>, _peer: SocketAddr| {
        let st = st.clone();
        async move { proxy::ops::handle(&st, req.method(), req.uri().path()) }
    };
    accept_loop(&state, listener, None, slots, handler, shutdown).await;
    Ok(())
}

async fn accept_loop<H, Fut, B>(
    state: &AppState,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    slots: Arc<ConnectionSlots>,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limits = state.config.limits.clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.idle_timeout / 2))
        .keep_alive_timeout(limits.idle_timeout / 2)
        // hyper's default (200 per connection) times max_connections is far more concurrent
        // requests than the process can hold (PROXY-REVIEW D6).
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    // Connection tasks, so that those still running after the grace period can be ended.
    let mut conns = tokio::task::JoinSet::new();

    loop {
        let permit = tokio::select! {
            p = slots.global() => match p {
                Some(p) => p,
                None => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        while conns.try_join_next().is_some() {}
        let Some(slot) = slots.admit(permit, peer.ip()) else {
            tracing::debug!(%peer, "connection refused: this address holds its share of connections");
            state
                .metrics
                .record_connection_refused(crate::metrics::ConnectionRefusal::PeerLimit);
            drop(stream);
            continue;
        };
        let open = state.metrics.connection_open();
        let _ = stream.set_nodelay(true);
        let stream = IdleIo::new(stream, limits.header_read_timeout, limits.idle_timeout);
        let activity = Activity::new();
        let service = {
            let activity = activity.clone();
            let handler = handler.clone();
            move |client: Option<TlsClient>| {
                let activity = activity.clone();
                let handler = handler.clone();
                service_fn(move |mut req: Request<Incoming>| {
                    let guard = activity.begin();
                    if let Some(c) = &client {
                        req.extensions_mut().insert(c.clone());
                    }
                    let fut = handler(req, peer);
                    async move {
                        let resp = fut.await;
                        Ok::<_, Infallible>(resp.map(|b| Tracked::new(b, guard)))
                    }
                })
            }
        };
        let builder = builder.clone();
        let tls = tls.clone();
        let stop = stop_rx.clone();
        let idle = limits.idle_timeout;
        let handshake_timeout = limits.header_read_timeout;
        conns.spawn(async move {
            let _slot = slot;
            let _open = open;
            let result = match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service(None));
                    drive(conn, &activity, idle, stop).await
                }
                Some(acceptor) => {
                    let tls_stream = match tokio::time::timeout(
                        handshake_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let client = client_certificate(tls_stream.get_ref().1);
                    let conn = builder.serve_connection(TokioIo::new(tls_stream), service(client));
                    drive(conn, &activity, idle, stop).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }

    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    match drained {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => {
            tracing::warn!(grace = ?limits.shutdown_grace, remaining = conns.len(), "shutdown grace period over; dropping remaining connections");
            conns.abort_all();
        }
    }
}

/// The subject of a client certificate the handshake verified (rustls only keeps verified
/// ones), for the request log and the audit event.
fn client_certificate(conn: &rustls::ServerConnection) -> Option<TlsClient> {
    let der = conn.peer_certificates()?.first()?;
    let subject = match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => cert.subject().to_string(),
        Err(_) => "<unparsable subject>".to_string(),
    };
    Some(TlsClient { subject })
}

/// Polls one connection to its end, asking it to close gracefully (GOAWAY on HTTP/2, close
/// after the current response on HTTP/1) once it has had no request for `idle`, or when the
/// server stops.
async fn drive<I, S, B>(
    conn: auto::Connection<'_, I, S, TokioExecutor>,
    activity: &Activity,
    idle: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(conn);
    let mut tick = tokio::time::interval(idle_check_interval(idle));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => return r,
            r = stop.wait_for(|s| *s), if !closing => {
                let _ = r;
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tick.tick(), if !closing => {
                if activity.idle_for(idle) {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
