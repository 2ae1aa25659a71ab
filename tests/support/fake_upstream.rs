//! A scripted upstream registry (in-process hyper server on 127.0.0.1:0) for behaviour a
//! real registry will not show: lying digests, hanging, rate limits, pagination links.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

pub type FakeBody = BoxBody<Bytes, Infallible>;
pub type Handler =
    Arc<dyn Fn(Seen) -> Pin<Box<dyn Future<Output = Response<FakeBody>> + Send>> + Send + Sync>;

/// What the fake saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query exactly as received.
    pub target: String,
    pub headers: http::HeaderMap,
}

pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn full(b: impl Into<Bytes>) -> FakeBody {
    Full::new(b.into()).boxed()
}

/// A body sent as separate chunks (chunked transfer encoding when no length is set).
pub fn chunks(parts: Vec<Bytes>) -> FakeBody {
    let s = futures_util::stream::iter(
        parts
            .into_iter()
            .map(|b| Ok::<_, Infallible>(Frame::data(b))),
    );
    StreamBody::new(s).boxed()
}

/// A body whose chunks arrive `delay` apart.
pub fn slow_chunks(parts: Vec<Bytes>, delay: std::time::Duration) -> FakeBody {
    let s = futures_util::stream::unfold(parts.into_iter(), move |mut it| async move {
        let b = it.next()?;
        tokio::time::sleep(delay).await;
        Some((Ok::<_, Infallible>(Frame::data(b)), it))
    });
    StreamBody::new(s).boxed()
}

pub fn response(status: u16, headers: &[(&str, &str)], body: FakeBody) -> Response<FakeBody> {
    let mut r = Response::new(body);
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
    for (k, v) in headers {
        r.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    r
}

impl FakeUpstream {
    pub async fn start<F, Fut>(handler: F) -> FakeUpstream
    where
        F: Fn(Seen) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<FakeBody>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |s| Box::pin(handler(s)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let s = Seen {
                                method: req.method().to_string(),
                                target: req
                                    .uri()
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default(),
                                headers: req.headers().clone(),
                            };
                            seen.lock().unwrap().push(s.clone());
                            let h = handler.clone();
                            async move { Ok::<_, Infallible>(h(s).await) }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FakeUpstream {
            addr,
            url: format!("http://{addr}"),
            seen,
            task,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}
