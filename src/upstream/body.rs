//! Reading response bodies with limits enforced on the byte stream (DESIGN practice 5): a
//! size cap that aborts as soon as it is crossed, and an idle timeout between chunks.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("body is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("no data for {idle:?} while reading the body")]
    Idle { idle: Duration },
    #[error("reading the body failed: {reason}")]
    Read { reason: String },
}

/// Reads the whole body of `resp`, failing as soon as more than `limit` bytes have arrived (or
/// when `Content-Length` already announces more), so a hostile upstream cannot make us buffer
/// an unbounded manifest or metadata file.
pub async fn read_body_limited(resp: reqwest::Response, limit: u64) -> Result<Bytes, BodyError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let cap = resp.content_length().unwrap_or(0).min(limit).min(1 << 20);
    let mut buf = BytesMut::with_capacity(usize::try_from(cap).unwrap_or(0));
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Read {
            reason: super::client::describe(&e.without_url()),
        })?;
        if (buf.len() as u64).saturating_add(chunk.len() as u64) > limit {
            return Err(BodyError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The body of `resp` as a stream of chunks that fails with [`BodyError::Idle`] when no chunk
/// arrives for `idle`. The request timeout only bounds the time to response headers; this
/// bounds a stalled body (a blob stream that stops sending without closing).
pub fn body_stream_with_idle_timeout(
    resp: reqwest::Response,
    idle: Duration,
) -> impl Stream<Item = Result<Bytes, BodyError>> + Send + 'static {
    let inner = resp.bytes_stream();
    futures_util::stream::unfold(Some(inner), move |state| async move {
        let mut inner = state?;
        match tokio::time::timeout(idle, inner.next()).await {
            Err(_) => Some((Err(BodyError::Idle { idle }), None)),
            Ok(None) => None,
            Ok(Some(Ok(b))) => Some((Ok(b), Some(inner))),
            Ok(Some(Err(e))) => Some((
                Err(BodyError::Read {
                    reason: super::client::describe(&e.without_url()),
                }),
                None,
            )),
        }
    })
}
