//! Connection-level resource bounds (PROXY-REVIEW D6): an HTTP/2 connection with no stream
//! in flight is closed after the idle timeout although it answers every PING, one client
//! address cannot take every slot, and the ops endpoints have a listener that a full registry
//! listener cannot lock out. The upstream is never contacted: these are server behaviours.
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::registry::TestProxy;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

fn config(extra_limits: &str, top: &str) -> String {
    format!(
        "{top}\n[limits]\n{extra_limits}\n[[upstream]]\nname = \"r.test\"\nurl = \"http://127.0.0.1:1\"\n"
    )
}

/// A raw HTTP/2 client connection (prior knowledge, as h2c clients connect). hyper's client
/// answers the server's keep-alive PINGs on its own, as every h2 stack does.
async fn h2_connect(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    (send, tokio::spawn(conn))
}

#[tokio::test]
async fn an_h2_connection_without_streams_is_closed_after_the_idle_timeout() {
    let proxy = TestProxy::start(&config("idle_timeout = \"1s\"", "")).await;
    let (_send, conn) = h2_connect(proxy.addr).await;
    // The server pings every 500 ms and the client answers; only a stream-level idle rule
    // can close this connection. 10 s is a liveness bound, not a measurement.
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(
        ended.is_ok(),
        "an h2 connection that never opened a stream was still open 10 s after a 1 s idle timeout"
    );

    // After a request, the same rule applies once the response is done.
    let (mut send, conn) = h2_connect(proxy.addr).await;
    let req = http::Request::get(format!("http://{}/healthz", proxy.addr))
        .body(Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(
        ended.is_ok(),
        "idle h2 connection kept open after its last request"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_busy_connection_is_not_idle() {
    // A connection that keeps asking is never cut by the idle rule.
    let proxy = TestProxy::start(&config("idle_timeout = \"1s\"", "")).await;
    let (mut send, conn) = h2_connect(proxy.addr).await;
    for _ in 0..6 {
        let req = http::Request::get(format!("http://{}/healthz", proxy.addr))
            .body(Empty::new())
            .unwrap();
        let resp = send
            .send_request(req)
            .await
            .expect("connection closed while in use");
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(!conn.is_finished());
    proxy.shutdown().await;
}

async fn connect_from(local: &str, to: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{local}:0").parse().unwrap()).unwrap();
    sock.connect(to).await.unwrap()
}

/// Reads until EOF or `wait`: true when the server closed the connection.
async fn closed_by_server(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(wait, s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

async fn healthz_from(local: &str, to: SocketAddr) -> String {
    let mut s = connect_from(local, to).await;
    tokio::io::AsyncWriteExt::write_all(
        &mut s,
        b"GET /healthz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("no answer")
        .unwrap();
    out
}

#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let proxy = TestProxy::start(&config(
        "max_connections = 8\nmax_connections_per_peer = 2",
        "",
    ))
    .await;
    let _a = connect_from("127.0.0.1", proxy.addr).await;
    let _b = connect_from("127.0.0.1", proxy.addr).await;
    // Give the server time to admit both before the third arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = connect_from("127.0.0.1", proxy.addr).await;
    assert!(
        closed_by_server(&mut third, Duration::from_secs(5)).await,
        "a third connection from one address was held open"
    );
    let answer = healthz_from("127.0.0.2", proxy.addr).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(_a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = healthz_from("127.0.0.1", proxy.addr).await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "freed slot not reusable: {answer}"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn ops_endpoints_answer_while_the_registry_listener_is_full() {
    let ops = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops_addr = ops.local_addr().unwrap();
    let proxy = TestProxy::start(&config(
        "max_connections = 1",
        &format!("ops_listen = [\"{ops_addr}\"]"),
    ))
    .await;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let st = proxy.state.clone();
    let ops_task = tokio::spawn(async move {
        trustgate::server::run_ops(st, ops, async {
            let _ = rx.await;
        })
        .await
    });
    // /metrics is the operators': not on the registry listener once ops_listen is set.
    let r = reqwest::get(format!("{}/metrics", proxy.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    drop(r);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Take the registry listener's only slot.
    let _hog = TcpStream::connect(proxy.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = client
            .get(format!("http://{ops_addr}{path}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path} on the ops listener: {e}"));
        assert_eq!(r.status(), 200, "{path}");
    }
    let r = client
        .get(format!("http://{ops_addr}/v2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        404,
        "the ops listener serves only the ops endpoints"
    );
    let _ = tx.send(());
    ops_task.await.unwrap().unwrap();
    proxy.shutdown().await;
}

/// Issue 8 metrics: request latency, in-flight and connection gauges, refused connections and
/// cache sizes as the ops endpoint exports them (OpenMetrics, by prometheus-client).
#[tokio::test]
async fn the_metrics_endpoint_exports_latency_gauges_and_refusals() {
    let proxy = TestProxy::start(&config("max_connections_per_peer = 1", "")).await;
    let answer = healthz_from("127.0.0.1", proxy.addr).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let _held = connect_from("127.0.0.1", proxy.addr).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refused = connect_from("127.0.0.1", proxy.addr).await;
    assert!(closed_by_server(&mut refused, Duration::from_secs(5)).await);
    drop(_held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = reqwest::get(format!("{}/metrics", proxy.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        r.headers()
    );
    let text = r.text().await.unwrap();
    for expected in [
        "trustgate_request_duration_seconds_count{class=\"2xx\"} 1",
        "trustgate_connections_refused_total{reason=\"peer_limit\"} 1",
        // This very request is in flight while the text is rendered, on its open connection.
        "trustgate_requests_in_flight 1",
        "trustgate_connections_open 1",
        "trustgate_content_cache_bytes 0",
        "trustgate_tag_cache_entries 0",
    ] {
        assert!(
            text.lines().any(|l| l == expected),
            "missing `{expected}` in\n{text}"
        );
    }
    proxy.shutdown().await;
}
