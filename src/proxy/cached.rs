//! Blobs answered from the on-disk content store, without the upstream: GET (200), HEAD, and
//! a single `Range` (206, or 416 when it starts past the end), as the registry itself answers
//! (distribution spec, "Pulling blobs"; RFC 9110 §14). Several ranges in one request, or an
//! `If-Range` that does not name this blob, get the whole blob (RFC 9110 §14.2 allows
//! ignoring `Range`; containerd asks for one range at a time). Every byte sent is re-hashed
//! against the digest on the way ([`verified_file_stream`]).

use bytes::{Bytes, BytesMut};
use http::header::{
    HeaderValue, ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_RANGE, RANGE,
};
use http::{HeaderMap, Response, StatusCode};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt as _;

use super::body::{self, BodyError};
use super::{ProxyBody, RequestCtx, DIGEST_HEADER};
use crate::cache::{CachedBlob, DiskStore};
use crate::registry::Digest;

/// Bytes read (and sent) at a time: large enough that the per-read cost of tokio's
/// blocking file I/O is small, small enough that 20 clients stay far below 64 MiB.
const CHUNK: usize = 256 * 1024;

/// What part of a blob of some length a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wanted {
    Whole,
    /// First and last byte, inclusive.
    Part(u64, u64),
    Unsatisfiable,
}

/// RFC 9110 §14.1.2 byte ranges, one of them: `bytes=a-b`, `bytes=a-`, `bytes=-n`.
/// Anything else is ignored (the whole blob is served), as §14.2 permits.
pub(crate) fn wanted(range: Option<&str>, len: u64) -> Wanted {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Wanted::Whole;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.is_empty(), num(a), num(b)) {
        // bytes=-n: the last n bytes.
        (true, _, Some(n)) => {
            if n == 0 || len == 0 {
                Wanted::Unsatisfiable
            } else {
                Wanted::Part(len.saturating_sub(n), len - 1)
            }
        }
        (false, Some(first), last) if b.is_empty() || last.is_some() => {
            if let Some(l) = last {
                if l < first {
                    return Wanted::Whole;
                }
            }
            if first >= len {
                Wanted::Unsatisfiable
            } else {
                let end = last.map_or(len - 1, |l| l.min(len - 1));
                Wanted::Part(first, end)
            }
        }
        _ => Wanted::Whole,
    }
}

/// Status, headers and the byte span (`first`, `count`) answering `ctx` for a blob of
/// `len` bytes named `digest` — from the store or from a fill in progress alike.
pub(crate) fn plan(
    ctx: &RequestCtx,
    digest: &Digest,
    len: u64,
) -> (StatusCode, HeaderMap, u64, u64) {
    let etag = format!("\"{digest}\"");
    let mut range = ctx.headers.get(RANGE).and_then(|v| v.to_str().ok());
    if let Some(cond) = ctx.headers.get(IF_RANGE) {
        // A strong validator that is not this blob's: the client's partial copy is of
        // something else, so it gets the whole blob.
        if cond.as_bytes() != etag.as_bytes() {
            range = None;
        }
    }
    let mut h = HeaderMap::new();
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&digest.to_string()) {
        h.insert(DIGEST_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, v);
    }
    let (status, first, count) = match wanted(range, len) {
        Wanted::Whole => (StatusCode::OK, 0, len),
        Wanted::Part(a, b) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{len}")) {
                h.insert(CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, a, b - a + 1)
        }
        Wanted::Unsatisfiable => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                h.insert(CONTENT_RANGE, v);
            }
            h.remove(CONTENT_TYPE);
            (StatusCode::RANGE_NOT_SATISFIABLE, 0, 0)
        }
    };
    h.insert(CONTENT_LENGTH, HeaderValue::from(count));
    (status, h, first, count)
}

/// The response for a held blob. A file verified since it was last written
/// ([`CachedBlob::verified`]) is sent as it is, just the bytes asked for; any other is
/// re-hashed whole while it streams, and recorded as verified when it matched.
pub async fn serve(
    ctx: &RequestCtx,
    store: &DiskStore,
    digest: &Digest,
    blob: CachedBlob,
) -> Result<Response<ProxyBody>, std::io::Error> {
    let len = blob.len;
    let (status, h, first, count) = plan(ctx, digest, len);
    let body = if ctx.head() || count == 0 {
        body::empty()
    } else if blob.verified {
        body::sized(plain_file_stream(blob.file, first, count).await?, count)
    } else {
        let file = blob.file;
        let check = Check {
            store: store.clone(),
            digest: *digest,
            stamp: blob.stamp,
        };
        body::sized(
            verified_file_stream(file, len, first, count, check, &ctx.id),
            count,
        )
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = h;
    Ok(r)
}

/// Bytes `first .. first + count` of a file already verified (see [`CachedBlob::verified`]:
/// the whole file hashed to the digest in this process and has not been written since, as
/// its inode and change time show). A file that ends early fails the body. Positional reads
/// straight into each chunk (one copy from the page cache), on the async worker when the
/// page cache holds the bytes ([`crate::cache::Reader`]).
async fn plain_file_stream(
    file: tokio::fs::File,
    first: u64,
    count: u64,
) -> Result<ProxyBody, std::io::Error> {
    let file = std::sync::Arc::new(file.into_std().await);
    Ok(body::stream(futures_util::stream::unfold(
        (Some(crate::cache::Reader::new(file)), first, count),
        |(reader, at, left)| async move {
            let mut reader = reader.filter(|_| left > 0)?;
            let want = left.min(CHUNK as u64) as usize;
            match reader.read_at(at, want).await {
                Ok(chunk) => {
                    let n = chunk.len() as u64;
                    Some((Ok(chunk), (Some(reader), at + n, left - n)))
                }
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    let reason = format!("file ended before byte {}", at + left);
                    Some((Err(BodyError::Store { reason }), (None, at, 0)))
                }
                Err(e) => {
                    let reason = e.to_string();
                    Some((Err(BodyError::Store { reason }), (None, at, 0)))
                }
            }
        },
    )))
}

/// Where a re-hash reports: the store, the digest, and the file's stamp when opened.
struct Check {
    store: DiskStore,
    digest: Digest,
    stamp: crate::cache::FileStamp,
}

/// Reading a held blob while proving it is still the blob: the whole file (`len` bytes) is
/// read and hashed, the `count` bytes from `first` are sent, and the last of them is held back
/// until the hash is known. A file that no longer matches its digest (bit rot, a bad restore,
/// a same-length overwrite), or that ends early, fails the body — a cut connection, never a
/// clean end — and is dropped from the store, so the next request fetches it again. A range
/// costs a read of the whole file: disk reads are cheap next to serving damaged content.
fn verified_file_stream(
    file: tokio::fs::File,
    len: u64,
    first: u64,
    count: u64,
    check: Check,
    request_id: &str,
) -> ProxyBody {
    let Check {
        store,
        digest,
        stamp,
    } = check;
    let s = FileVerify {
        stamp,
        file,
        len,
        pos: 0,
        first,
        end: first + count,
        hasher: Sha256::new(),
        held: None,
        store,
        digest,
        request_id: request_id.to_string(),
        done: false,
    };
    body::stream(futures_util::stream::unfold(s, |mut s| async move {
        if s.done {
            return None;
        }
        loop {
            if s.pos == s.len {
                s.done = true;
                let actual = Digest::from_sha256_bytes(s.hasher.clone().finalize().into());
                if actual == s.digest {
                    // Every byte of this file, as `stamp` describes it, is the blob: later
                    // reads of the same unchanged file need not hash it again.
                    s.store.mark_verified(&s.digest, s.stamp);
                    return s.held.take().map(|last| (Ok(last), s));
                }
                tracing::error!(
                    request_id = %s.request_id,
                    expected = %s.digest,
                    %actual,
                    "content cache: held blob no longer matches its digest; cutting the connection and dropping it"
                );
                s.store.forget(&s.digest);
                let err = BodyError::DigestMismatch {
                    expected: s.digest.to_string(),
                    actual: actual.to_string(),
                };
                return Some((Err(err), s));
            }
            let want = usize::try_from(s.len - s.pos).unwrap_or(CHUNK).min(CHUNK);
            let mut buf = BytesMut::with_capacity(want);
            let read = (&mut s.file).take(want as u64).read_buf(&mut buf).await;
            let n = match read {
                Ok(0) => {
                    s.done = true;
                    s.store.forget(&s.digest);
                    let reason = format!("file ended {} bytes early", s.len - s.pos);
                    return Some((Err(BodyError::Store { reason }), s));
                }
                Ok(n) => n as u64,
                Err(e) => {
                    s.done = true;
                    let reason = e.to_string();
                    return Some((Err(BodyError::Store { reason }), s));
                }
            };
            let chunk = buf.freeze();
            s.hasher.update(&chunk);
            let (start, stop) = (s.pos, s.pos + n);
            s.pos = stop;
            // The part of this chunk inside the requested range, if any.
            let (a, b) = (start.max(s.first), stop.min(s.end));
            if a < b {
                let part = chunk.slice((a - start) as usize..(b - start) as usize);
                if let Some(prev) = s.held.replace(part) {
                    return Some((Ok(prev), s));
                }
            }
        }
    }))
}

struct FileVerify {
    stamp: crate::cache::FileStamp,
    file: tokio::fs::File,
    len: u64,
    pos: u64,
    first: u64,
    end: u64,
    hasher: Sha256,
    held: Option<Bytes>,
    store: DiskStore,
    digest: Digest,
    request_id: String,
    done: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let w = |r: &str| wanted(Some(r), 100);
        assert_eq!(wanted(None, 100), Wanted::Whole);
        assert_eq!(w("bytes=0-9"), Wanted::Part(0, 9));
        assert_eq!(w("bytes=90-"), Wanted::Part(90, 99));
        assert_eq!(w("bytes=90-500"), Wanted::Part(90, 99));
        assert_eq!(w("bytes=-10"), Wanted::Part(90, 99));
        assert_eq!(w("bytes=-500"), Wanted::Part(0, 99));
        assert_eq!(w("bytes=100-"), Wanted::Unsatisfiable);
        assert_eq!(w("bytes=-0"), Wanted::Unsatisfiable);
        assert_eq!(w("bytes=0-1,5-6"), Wanted::Whole);
        assert_eq!(w("bytes=9-1"), Wanted::Whole);
        assert_eq!(w("items=0-1"), Wanted::Whole);
        assert_eq!(w("bytes=a-b"), Wanted::Whole);
        assert_eq!(w("bytes=-"), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=0-"), 0), Wanted::Unsatisfiable);
    }
}
