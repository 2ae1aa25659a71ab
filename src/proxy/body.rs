//! Response bodies: fixed bytes, or an upstream stream passed through; plus the request log
//! line, written when the body is finished (or cut, or abandoned by the client), so it can
//! report the bytes actually sent.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full, StreamBody};

/// Why a streamed body stopped early. The server turns any body error into a cut
/// connection (HTTP/1) or a reset stream (HTTP/2): never a clean end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("upstream body failed: {reason}")]
    Upstream { reason: String },
    #[error("cached blob could not be read: {reason}")]
    Store { reason: String },
    #[error("blob content does not match digest {expected} (got {actual})")]
    DigestMismatch { expected: String, actual: String },
    #[error("upstream sent more than the {announced} bytes it announced")]
    TooLong { announced: u64 },
}

pub type ProxyBody = UnsyncBoxBody<Bytes, BodyError>;

pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Passes an upstream body through without looking at it.
pub fn stream(s: impl Stream<Item = Result<Bytes, BodyError>> + Send + 'static) -> ProxyBody {
    StreamBody::new(s.map_ok(Frame::data)).boxed_unsync()
}

/// `inner`, announcing exactly `len` bytes to the server. hyper then frames the response by
/// the body itself (and keeps polling it until it ends or fails) instead of trusting a copied
/// `Content-Length`; the response's `Content-Length` header must say the same `len`.
pub fn sized(inner: ProxyBody, len: u64) -> ProxyBody {
    Sized { inner, len }.boxed_unsync()
}

struct Sized {
    inner: ProxyBody,
    len: u64,
}

impl Body for Sized {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

/// An upstream body passed through; fails (cutting the client's response) when no data
/// arrives for `idle`.
pub fn from_response(resp: reqwest::Response, idle: Duration) -> ProxyBody {
    stream(
        crate::upstream::body_stream_with_idle_timeout(resp, idle).map(|r| {
            r.map_err(|e| BodyError::Upstream {
                reason: e.to_string(),
            })
        }),
    )
}

/// Fields of the request log line.
#[derive(Debug, Default)]
pub struct LogFields {
    pub id: String,
    pub peer: String,
    /// Who the client authenticated as (`-` when anonymous or not configured).
    pub user: String,
    pub method: String,
    pub path: String,
    pub upstream: String,
    pub status: u16,
}

/// Wraps a response body, counts bytes, and logs the request when dropped.
pub struct LoggedBody {
    inner: ProxyBody,
    fields: LogFields,
    start: Instant,
    bytes: u64,
    outcome: &'static str,
    /// Counts the request in `trustgate_requests_in_flight` until the body is dropped.
    _in_flight: crate::metrics::InFlight,
}

impl LoggedBody {
    pub fn new(
        inner: ProxyBody,
        fields: LogFields,
        start: Instant,
        in_flight: crate::metrics::InFlight,
    ) -> LoggedBody {
        let outcome = if inner.is_end_stream() {
            "complete"
        } else {
            "abandoned"
        };
        LoggedBody {
            inner,
            fields,
            start,
            bytes: 0,
            outcome,
            _in_flight: in_flight,
        }
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.bytes += d.len() as u64;
                }
                // hyper stops polling once a body with a known length reports its end, so
                // `Ready(None)` may never be seen: the end is known here already.
                if this.inner.is_end_stream() {
                    this.outcome = "complete";
                }
            }
            Poll::Ready(Some(Err(e))) => {
                this.outcome = "cut";
                tracing::warn!(request_id = %this.fields.id, error = %e, "response body cut");
            }
            Poll::Ready(None) => this.outcome = "complete",
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        let f = &self.fields;
        tracing::info!(
            request_id = %f.id,
            client = %f.peer,
            user = %f.user,
            method = %f.method,
            path = %f.path,
            upstream = %f.upstream,
            status = f.status,
            bytes = self.bytes,
            duration_ms = self.start.elapsed().as_millis() as u64,
            outcome = self.outcome,
            "request"
        );
    }
}
