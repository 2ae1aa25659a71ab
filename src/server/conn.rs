//! One client connection: served by hyper-util (HTTP/1.1 or HTTP/2), closed gracefully when
//! no request has been in flight for the idle timeout, or when the server shuts down.
//!
//! Byte-level idleness ([`super::idle::IdleIo`]) is not enough for HTTP/2: the server's own
//! keep-alive PINGs are answered by every h2 stack, so a connection that never opens a stream
//! moves bytes forever (PROXY-REVIEW D6). Here idleness is counted in requests: each request
//! holds an [`Activity`] guard until its response body is dropped (sent or abandoned).

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

#[derive(Default)]
pub struct Activity {
    in_flight: AtomicUsize,
    last_end: Mutex<Option<Instant>>,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            last_end: Mutex::new(Some(Instant::now())),
        })
    }

    pub fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        RequestGuard(self.clone())
    }

    /// Whether the connection has had no request in flight for at least `idle`.
    pub fn idle_for(&self, idle: Duration) -> bool {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return false;
        }
        let last = *self.last_end.lock().unwrap_or_else(|p| p.into_inner());
        last.is_some_and(|t| t.elapsed() >= idle)
    }
}

pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        *self.0.last_end.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request counted as in flight until hyper drops it.
pub struct Tracked<B> {
    inner: B,
    _guard: RequestGuard,
}

impl<B> Tracked<B> {
    pub fn new(inner: B, guard: RequestGuard) -> Tracked<B> {
        Tracked {
            inner,
            _guard: guard,
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How often an idle connection is looked at: the close comes at most this late.
pub fn idle_check_interval(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(5))
}
