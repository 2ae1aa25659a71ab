//! UpstreamClient against in-process servers that misbehave on purpose: redirects to other
//! hosts (Authorization must not follow), redirect loops, hangs, endless and stalled bodies,
//! TLS with a CA bundle.
mod support;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use trustgate::upstream::{
    body_stream_with_idle_timeout, read_body_limited, BodyError, ClientSettings, Credentials,
    UpstreamClient, UpstreamError, UpstreamRequest,
};

type Body = BoxBody<Bytes, Infallible>;
type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync,
>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

fn reply(status: u16, headers: &[(&str, String)], body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.body(full(body)).unwrap()
}

/// Every request a server saw: path and the Authorization header.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// Serves `handler` on 127.0.0.1:0 over plain HTTP/1.1 (or TLS with `tls`), recording requests.
async fn serve(
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: impl Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>>
        + Send
        + Sync
        + 'static,
) -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let handler: Handler = Arc::new(handler);
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            let seen = seen2.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let auth = req
                        .headers()
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_string());
                    seen.lock().unwrap().push((req.uri().to_string(), auth));
                    let fut = handler(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match tls {
                    Some(acc) => {
                        if let Ok(s) = acc.accept(stream).await {
                            let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                        }
                    }
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn settings(base: String) -> ClientSettings {
    ClientSettings {
        name: "lab".to_string(),
        base_url: base.parse().unwrap(),
        ca_file: None,
        credentials: Some(Credentials {
            username: "u".to_string(),
            password: "p".to_string(),
        }),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        allowed_realms: Vec::new(),
    }
}

fn get(path: &str) -> UpstreamRequest {
    UpstreamRequest {
        method: Method::GET,
        path_and_query: path.to_string(),
        headers: HeaderMap::new(),
        scope: None,
    }
}

/// Fails instead of hanging when the behaviour under test is broken.
async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("the client hung")
}

#[tokio::test]
async fn authorization_does_not_follow_a_redirect_to_another_host_or_port() {
    let (target, target_seen) =
        serve(None, |_| Box::pin(async { reply(200, &[], "blob bytes") })).await;
    let port = target.port();
    let (origin, origin_seen) = serve(None, move |req| {
        Box::pin(async move {
            if req.headers().get("authorization").is_none() {
                return reply(
                    401,
                    &[("www-authenticate", r#"Basic realm="lab""#.into())],
                    "",
                );
            }
            let loc = match req.uri().path() {
                "/to-localhost" => format!("http://localhost:{port}/blob"),
                "/to-other-port" => format!("http://127.0.0.1:{port}/blob"),
                "/same-origin" => "/landing".to_string(),
                _ => return reply(200, &[], "landed"),
            };
            reply(307, &[("location", loc)], "")
        })
    })
    .await;
    let client = UpstreamClient::new(settings(format!("http://{origin}"))).unwrap();
    for path in ["/to-localhost", "/to-other-port"] {
        let resp = bounded(client.send(get(path))).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.text().await.unwrap(), "blob bytes");
    }
    let target_seen = target_seen.lock().unwrap().clone();
    assert_eq!(target_seen.len(), 2);
    for (path, auth) in &target_seen {
        assert_eq!(auth, &None, "Authorization leaked across hosts to {path}");
    }
    // Control: on the same origin the header does follow, so the check above can see it.
    let resp = bounded(client.send(get("/same-origin"))).await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "landed");
    let origin_seen = origin_seen.lock().unwrap().clone();
    let landing = origin_seen.iter().find(|(p, _)| p == "/landing").unwrap();
    assert!(landing
        .1
        .as_deref()
        .is_some_and(|a| a.starts_with("Basic ")));
}

#[tokio::test]
async fn redirect_loop_is_a_protocol_error() {
    let (addr, seen) = serve(None, |_| {
        Box::pin(async { reply(302, &[("location", "/again".into())], "") })
    })
    .await;
    let client = UpstreamClient::new(settings(format!("http://{addr}"))).unwrap();
    match bounded(client.send(get("/start"))).await {
        Err(UpstreamError::Protocol { upstream, .. }) => assert_eq!(upstream, "lab"),
        other => panic!("expected Protocol, got {other:?}"),
    }
    assert!(seen.lock().unwrap().len() <= 1 + trustgate::upstream::client::MAX_REDIRECTS);
}

#[tokio::test]
async fn hanging_upstream_is_a_timeout_and_closed_port_unreachable() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let mut st = settings(format!("http://{addr}"));
    st.request_timeout = Duration::from_millis(300);
    let client = UpstreamClient::new(st).unwrap();
    match bounded(client.send(get("/v2/"))).await {
        Err(UpstreamError::Timeout { upstream, timeout }) => {
            assert_eq!(upstream, "lab");
            assert_eq!(timeout, Duration::from_millis(300));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }

    let closed = support::free_port();
    let client = UpstreamClient::new(settings(format!("http://127.0.0.1:{closed}"))).unwrap();
    match bounded(client.send(get("/v2/"))).await {
        Err(UpstreamError::Unreachable { upstream, .. }) => assert_eq!(upstream, "lab"),
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[tokio::test]
async fn read_body_limited_stops_an_endless_body() {
    let (addr, _) = serve(None, |req| {
        Box::pin(async move {
            match req.uri().path() {
                "/endless" => {
                    let chunks = futures_util::stream::repeat_with(|| {
                        Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; 1024])))
                    });
                    Response::new(BodyExt::boxed(StreamBody::new(chunks)))
                }
                "/announced" => reply(200, &[], vec![b'y'; 10_000]),
                _ => reply(200, &[], vec![b'z'; 4096]),
            }
        })
    })
    .await;
    let client = UpstreamClient::new(settings(format!("http://{addr}"))).unwrap();
    for path in ["/endless", "/announced"] {
        let resp = bounded(client.send(get(path))).await.unwrap();
        match bounded(read_body_limited(resp, 4096)).await {
            Err(BodyError::TooLarge { limit }) => assert_eq!(limit, 4096),
            other => panic!("{path}: expected TooLarge, got {other:?}"),
        }
    }
    let resp = bounded(client.send(get("/exact"))).await.unwrap();
    assert_eq!(
        bounded(read_body_limited(resp, 4096)).await.unwrap().len(),
        4096
    );
}

#[tokio::test]
async fn stalled_body_hits_the_idle_timeout() {
    let (addr, _) = serve(None, |_| {
        Box::pin(async {
            let first = futures_util::stream::once(async {
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"first")))
            });
            let stall = futures_util::stream::pending();
            Response::new(BodyExt::boxed(StreamBody::new(first.chain(stall))))
        })
    })
    .await;
    let client = UpstreamClient::new(settings(format!("http://{addr}"))).unwrap();
    let resp = bounded(client.send(get("/blob"))).await.unwrap();
    let mut s = Box::pin(body_stream_with_idle_timeout(
        resp,
        Duration::from_millis(300),
    ));
    assert_eq!(bounded(s.next()).await.unwrap().unwrap().as_ref(), b"first");
    match bounded(s.next()).await {
        Some(Err(BodyError::Idle { idle })) => assert_eq!(idle, Duration::from_millis(300)),
        other => panic!("expected Idle, got {other:?}"),
    }
    assert!(s.next().await.is_none(), "the stream ends after the error");
}

fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

#[tokio::test]
async fn ca_file_may_hold_several_certificates() {
    let dir = support::tempdir();
    let unrelated = support::pki::TestCa::new("unrelated CA");
    let ca = support::pki::TestCa::new("lab CA");
    let issued = ca.issue(dir.path(), "lab");
    let (addr, _) = serve(
        Some(tls_acceptor(&issued.cert_path, &issued.key_path)),
        |_| Box::pin(async { reply(200, &[], "over tls") }),
    )
    .await;
    let bundle = dir.path().join("bundle.pem");
    std::fs::write(&bundle, format!("{}\n{}", unrelated.ca_pem, ca.ca_pem)).unwrap();
    let only_unrelated = dir.path().join("unrelated.pem");
    std::fs::write(&only_unrelated, &unrelated.ca_pem).unwrap();

    let mut st = settings(format!("https://127.0.0.1:{}", addr.port()));
    st.ca_file = Some(bundle);
    let client = UpstreamClient::new(st.clone()).unwrap();
    let resp = bounded(client.send(get("/v2/"))).await.unwrap();
    assert_eq!(
        resp.version(),
        http::Version::HTTP_2,
        "ALPN h2 not negotiated"
    );
    assert_eq!(resp.text().await.unwrap(), "over tls");

    st.ca_file = Some(only_unrelated);
    let client = UpstreamClient::new(st).unwrap();
    assert!(matches!(
        bounded(client.send(get("/v2/"))).await,
        Err(UpstreamError::Unreachable { .. })
    ));
}

#[test]
fn bad_ca_files_are_settings_errors_naming_the_file() {
    let dir = support::tempdir();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.pem");
    for path in [garbage, broken, missing] {
        let mut st = settings("https://registry.example".to_string());
        st.ca_file = Some(path.clone());
        match UpstreamClient::new(st) {
            Err(UpstreamError::Settings { upstream, reason }) => {
                assert_eq!(upstream, "lab");
                assert!(reason.contains(&path.display().to_string()), "{reason}");
            }
            other => panic!("{}: expected Settings, got {other:?}", path.display()),
        }
    }
}

#[tokio::test]
async fn a_challenge_from_a_redirect_target_is_not_answered() {
    let (realm, realm_seen) = serve(None, |_| {
        Box::pin(async { reply(200, &[], r#"{"token":"t"}"#) })
    })
    .await;
    let (storage, storage_seen) = serve(None, move |_| {
        Box::pin(async move {
            reply(
                401,
                &[(
                    "www-authenticate",
                    format!(r#"Bearer realm="http://{realm}/token",service="s""#),
                )],
                "",
            )
        })
    })
    .await;
    let (origin, _) = serve(None, move |_| {
        Box::pin(async move {
            reply(
                307,
                &[(
                    "location",
                    format!("http://localhost:{}/blob", storage.port()),
                )],
                "",
            )
        })
    })
    .await;
    let client = UpstreamClient::new(settings(format!("http://{origin}"))).unwrap();
    let resp = bounded(client.send(get("/v2/a/blobs/x"))).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        realm_seen.lock().unwrap().is_empty(),
        "answered a foreign challenge"
    );
    assert_eq!(
        storage_seen.lock().unwrap().len(),
        1,
        "retried at the redirect target"
    );
}

/// PROXY-REVIEW D17: an https upstream could redirect trustgate to plain http (or anywhere).
#[tokio::test]
async fn a_redirect_from_https_to_http_is_refused() {
    let dir = support::tempdir();
    let ca = support::pki::TestCa::new("lab CA");
    let issued = ca.issue(dir.path(), "lab");
    let (plain, plain_seen) =
        serve(None, |_| Box::pin(async { reply(200, &[], "clear text") })).await;
    let port = plain.port();
    let (addr, _) = serve(
        Some(tls_acceptor(&issued.cert_path, &issued.key_path)),
        move |req| {
            Box::pin(async move {
                match req.uri().path() {
                    "/downgrade" => reply(
                        307,
                        &[("location", format!("http://127.0.0.1:{port}/blob"))],
                        "",
                    ),
                    _ => reply(200, &[], "over tls"),
                }
            })
        },
    )
    .await;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let mut st = settings(format!("https://127.0.0.1:{}", addr.port()));
    st.ca_file = Some(ca_file);
    let client = UpstreamClient::new(st).unwrap();
    match bounded(client.send(get("/downgrade"))).await {
        Err(UpstreamError::Protocol { reason, .. }) => {
            assert!(reason.contains("https"), "{reason}")
        }
        other => panic!("expected a refused redirect, got {other:?}"),
    }
    assert!(
        plain_seen.lock().unwrap().is_empty(),
        "the http target was contacted"
    );
}
