//! Single-flight blob fills: however many clients miss one blob at once, the upstream is
//! asked once (PROXY-REVIEW D1, M3; issue 9).
//!
//! The first request for a `(registry/repository, digest)` that is not held becomes the
//! *leader*: it asks the upstream, reserves the announced length in the store
//! ([`crate::cache::FillFile`]) and hands the body to a fill task that writes it, once, to
//! one temp file while hashing it. Every client — the leader's included — is a *follower*
//! of that fill: it waits on a `watch` of the written length and takes what has been written,
//! so bytes reach each client as they arrive, and a client that comes mid-fill gets the bytes
//! so far and then follows. A follower that keeps up takes the batch just written from
//! memory (the same buffer that was hashed and written; 12% less CPU per miss than reading it
//! back, in perf samples); one that fell behind, or joined late, reads the file (positional
//! reads of the shared descriptor). A range is served the same way.
//!
//! Integrity: the fill hashes exactly the bytes it writes, in order, and declares the fill
//! verified only when all `len` bytes are written and their sha256 is the digest. Every
//! follower holds back its last chunk until then, so no client sees a clean end of bytes the
//! digest did not cover; a fill that fails (digest, short or long body, upstream error,
//! abandoned) fails every follower with a body error — a cut connection, never a clean end —
//! and publishes nothing. The temp file is private to the process (created `create_new` under
//! the store's `tmp`, written only by the fill task), so what followers read back (or take
//! from memory) is what was hashed.
//!
//! A follower that goes away only drops its `watch` receiver; the fill goes on for the
//! others. When none is left it goes on for at most `grace` (the upstream's request timeout)
//! so a retrying client can join again, and is then abandoned: the work an impatient client
//! can cause is bounded.
//!
//! The key includes the repository: content is served only under a repository the upstream
//! confirmed holds it (see `DiskStore::link`), so two repositories sharing a layer each have
//! their own fill.

use std::collections::HashMap;
use std::os::unix::fs::FileExt as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::stream::{BoxStream, StreamExt};
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;

use super::body::{self, BodyError};
use super::ProxyBody;
use crate::cache::FillFile;
use crate::registry::Digest;

/// At most this many bytes gather while a write is in flight; then the fill waits for it.
/// Each write is hashed in the same pass, while its bytes are in cache.
const WRITE_BATCH: usize = 1024 * 1024;
/// A write starts once this much has gathered (or [`GATHER_FOR`] passed, or the body ended):
/// each write wakes every follower for one read, so tiny writes cost many thread hand-offs.
const MIN_WRITE: usize = 128 * 1024;
/// A batch goes to the file in pieces of this size, each hashed just before it is written, so
/// the write's copy into the page cache reads the piece from L2 instead of from memory a
/// second time. (Tried as a cure for the slow misses the blob bench sees on this VM, where
/// the page-cache copy took 30% of a miss: it did not cure them; see the README.)
const WRITE_PIECE: usize = 64 * 1024;
/// A batch buffer's size: a full batch plus one more upstream chunk (the HTTP client's reads
/// are at most ~400 KiB), so a batch rarely reallocates.
const BATCH_CAPACITY: usize = WRITE_BATCH + 512 * 1024;
const GATHER_FOR: Duration = Duration::from_millis(10);
/// Bytes a follower reads (and sends) at a time.
const READ_CHUNK: usize = 256 * 1024;

type Key = (String, Digest);

/// The fills in progress, by repository scope and digest.
#[derive(Default)]
pub struct Fills {
    map: Mutex<HashMap<Key, Arc<Slot>>>,
}

/// One key's state: the leader is asking the upstream, the fill runs, or the leader gave up
/// before a fill started (its followers then ask the upstream themselves).
struct Slot {
    state: watch::Sender<SlotState>,
}

#[derive(Clone)]
enum SlotState {
    Starting,
    Filling(Arc<Fill>),
    Gone,
}

/// One fill: the file being written and how far it got.
pub struct Fill {
    pub digest: Digest,
    /// The announced (reserved) length: the fill is verified only at exactly this length.
    pub len: u64,
    file: Arc<std::fs::File>,
    progress: watch::Sender<Progress>,
}

#[derive(Clone, Debug)]
struct Progress {
    /// Bytes written to the file and readable by followers.
    written: u64,
    /// The batch written last, bytes `at .. at + bytes.len()` of the file, for followers
    /// that keep up to take without reading the file back.
    recent: Option<Recent>,
    end: End,
}

#[derive(Clone, Debug)]
struct Recent {
    at: u64,
    bytes: Bytes,
}

#[derive(Clone, Debug)]
enum End {
    Running,
    Verified,
    Failed(Arc<Failure>),
}

/// Why a fill failed; every follower's body ends with it.
#[derive(Debug)]
enum Failure {
    Digest { expected: Digest, actual: Digest },
    TooLong { announced: u64 },
    Upstream(String),
    Store(String),
}

impl Failure {
    fn body_error(&self) -> BodyError {
        match self {
            Failure::Digest { expected, actual } => BodyError::DigestMismatch {
                expected: expected.to_string(),
                actual: actual.to_string(),
            },
            Failure::TooLong { announced } => BodyError::TooLong {
                announced: *announced,
            },
            Failure::Upstream(reason) => BodyError::Upstream {
                reason: reason.clone(),
            },
            Failure::Store(reason) => BodyError::Store {
                reason: reason.clone(),
            },
        }
    }
}

/// What [`Fills::claim`] found.
pub enum Claim {
    /// No fill for the key: this request asks the upstream, then [`Leader::start`]s one.
    Lead(Leader),
    /// A fill runs (or just ended): follow it.
    Follow(Arc<Fill>),
    /// The leader this request waited for gave up before a fill started; ask the upstream
    /// directly (uncached).
    Alone,
}

impl Fills {
    pub fn new() -> Arc<Fills> {
        Arc::new(Fills::default())
    }

    /// Leads, or follows, the fill of `digest` under `scope`.
    pub async fn claim(self: &Arc<Self>, scope: &str, digest: &Digest) -> Claim {
        let key = (scope.to_string(), *digest);
        let mut rx = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&key) {
                Some(slot) => slot.state.subscribe(),
                None => {
                    let (tx, _) = watch::channel(SlotState::Starting);
                    let slot = Arc::new(Slot { state: tx });
                    map.insert(key.clone(), slot.clone());
                    return Claim::Lead(Leader {
                        fills: self.clone(),
                        key,
                        slot,
                    });
                }
            }
        };
        let state = rx
            .wait_for(|s| !matches!(s, SlotState::Starting))
            .await
            .map(|s| s.clone());
        match state {
            Ok(SlotState::Filling(fill)) => Claim::Follow(fill),
            _ => Claim::Alone,
        }
    }

    /// How many fills are in progress (or being started).
    pub fn in_progress(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn remove(&self, key: &Key, slot: &Arc<Slot>) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            map.remove(key);
        }
    }
}

/// The request that asks the upstream for a key. Dropped without [`Leader::start`] (an
/// upstream error, no room in the store), its waiting followers are told to go alone.
pub struct Leader {
    fills: Arc<Fills>,
    key: Key,
    slot: Arc<Slot>,
}

impl Drop for Leader {
    fn drop(&mut self) {
        // After `start` the slot is Filling, and the fill task removes it when it ends.
        if matches!(*self.slot.state.borrow(), SlotState::Starting) {
            self.fills.remove(&self.key, &self.slot);
            self.slot.state.send_replace(SlotState::Gone);
        }
    }
}

impl Leader {
    /// Starts the fill of `file` from `body` (the upstream's 200 body, `file.len()` bytes
    /// announced) and returns it for the leader to follow too.
    pub fn start(
        self,
        file: FillFile,
        body: BoxStream<'static, Result<Bytes, String>>,
        grace: Duration,
        request_id: &str,
    ) -> Arc<Fill> {
        let (progress, _) = watch::channel(Progress {
            written: 0,
            recent: None,
            end: End::Running,
        });
        let fill = Arc::new(Fill {
            digest: self.key.1,
            len: file.len(),
            file: file.file().clone(),
            progress,
        });
        self.slot
            .state
            .send_replace(SlotState::Filling(fill.clone()));
        let task = FillTask {
            fills: self.fills.clone(),
            key: self.key.clone(),
            slot: self.slot.clone(),
            fill: fill.clone(),
            grace,
            request_id: request_id.to_string(),
        };
        tokio::spawn(task.run(file, body));
        fill
    }
}

struct FillTask {
    fills: Arc<Fills>,
    key: Key,
    slot: Arc<Slot>,
    fill: Arc<Fill>,
    grace: Duration,
    request_id: String,
}

/// One blocking write of a batch, hashed in the same pass; returns the hasher and the batch.
type Write = tokio::task::JoinHandle<std::io::Result<(Sha256, BytesMut)>>;

/// Written batches kept for reuse as batch buffers once no follower holds them: the one
/// followers are taking, the ones their HTTP connections are still sending, and one spare.
const RETIRED_KEEP: usize = 4;

/// A buffer for the next batch: a retired batch no follower holds any more, or a new one.
fn batch_buffer(retired: &mut Vec<Bytes>) -> BytesMut {
    while let Some(i) = retired.iter().position(Bytes::is_unique) {
        if let Ok(mut b) = retired.swap_remove(i).try_into_mut() {
            b.clear();
            return b;
        }
    }
    BytesMut::with_capacity(BATCH_CAPACITY)
}

impl FillTask {
    async fn run(self, file: FillFile, mut body: BoxStream<'static, Result<Bytes, String>>) {
        let len = self.fill.len;
        let mut hasher = Some(Sha256::new());
        // Each upstream chunk is copied into the batch and dropped at once, so the HTTP
        // client's read buffer is free again before its next read and is reused in place.
        // Holding the chunks instead (as a batch of `Bytes`) made every read land in freshly
        // allocated memory: a page fault per 4 KiB of the blob, 10% of a miss's CPU in a
        // perf profile, against a copy that stays in cache. A written batch is published to
        // the followers (see `Recent`), and its buffer gathers a later batch once they have
        // all let go of it.
        let mut batch = BytesMut::with_capacity(BATCH_CAPACITY);
        let mut retired: Vec<Bytes> = Vec::with_capacity(RETIRED_KEEP + 1);
        // Bytes handed to writes, and bytes whose write completed (visible to followers).
        let mut handed = 0u64;
        let mut written = 0u64;
        let mut in_flight: Option<(Write, u64)> = None;
        let mut alone_since: Option<Instant> = None;
        let outcome: Result<Sha256, Failure> = loop {
            // With bytes gathered, wait only briefly for more: a slow upstream's bytes still
            // reach the followers within GATHER_FOR.
            let next = if batch.is_empty() {
                Some(body.next().await)
            } else {
                tokio::time::timeout(GATHER_FOR, body.next()).await.ok()
            };
            let timed_out = next.is_none();
            let last = match next.flatten() {
                _ if timed_out => false,
                Some(Ok(chunk)) => {
                    if handed + (batch.len() + chunk.len()) as u64 > len {
                        break Err(Failure::TooLong { announced: len });
                    }
                    batch.extend_from_slice(&chunk);
                    false
                }
                Some(Err(reason)) => break Err(Failure::Upstream(reason)),
                None => true,
            };
            // Bytes go to the file once MIN_WRITE gathered (or GATHER_FOR passed) and the
            // previous write is done, so a slow upstream's bytes reach followers as they
            // arrive; while a write is busy they gather into one larger write (so a fast
            // upstream costs few blocking calls and few follower wake-ups).
            let idle = in_flight.as_ref().is_none_or(|(w, _)| w.is_finished());
            let enough = batch.len() >= MIN_WRITE || timed_out;
            if !batch.is_empty() && ((idle && enough) || batch.len() >= WRITE_BATCH || last) {
                // One write in flight at a time, overlapping the next batch's arrival.
                if let Some((w, n)) = in_flight.take() {
                    match w.await {
                        Ok(Ok((h, buf))) => {
                            hasher = Some(h);
                            let at = written;
                            written += n;
                            retired.push(self.publish_batch(written, at, buf));
                            if retired.len() > RETIRED_KEEP {
                                retired.remove(0);
                            }
                        }
                        Ok(Err(e)) => break Err(Failure::Store(e.to_string())),
                        Err(e) => break Err(Failure::Store(e.to_string())),
                    }
                }
                let buf = std::mem::replace(&mut batch, batch_buffer(&mut retired));
                let n = buf.len() as u64;
                let Some(mut h) = hasher.take() else {
                    break Err(Failure::Store("hasher lost".into()));
                };
                let f = self.fill.file.clone();
                let at = handed;
                handed += n;
                in_flight = Some((
                    tokio::task::spawn_blocking(move || {
                        let mut at = at;
                        for piece in buf.chunks(WRITE_PIECE) {
                            h.update(piece);
                            f.write_all_at(piece, at)?;
                            at += piece.len() as u64;
                        }
                        Ok((h, buf))
                    }),
                    n,
                ));
            }
            if last {
                if let Some((w, n)) = in_flight.take() {
                    match w.await {
                        Ok(Ok((h, buf))) => {
                            hasher = Some(h);
                            let at = written;
                            written += n;
                            self.publish_batch(written, at, buf);
                        }
                        Ok(Err(e)) => break Err(Failure::Store(e.to_string())),
                        Err(e) => break Err(Failure::Store(e.to_string())),
                    }
                }
                if written != len {
                    break Err(Failure::Upstream(format!(
                        "upstream body ended after {written} of {len} bytes"
                    )));
                }
                match hasher.take() {
                    Some(h) => break Ok(h),
                    None => break Err(Failure::Store("hasher lost".into())),
                }
            }
            // Nobody follows any more: keep going for a while (a client may retry), then stop.
            if self.fill.progress.receiver_count() == 0 {
                let since = *alone_since.get_or_insert_with(Instant::now);
                if since.elapsed() > self.grace {
                    break Err(Failure::Upstream(
                        "fill abandoned: no client left to serve".into(),
                    ));
                }
            } else {
                alone_since = None;
            }
        };
        let outcome = outcome.and_then(|h| {
            let actual = Digest::from_sha256_bytes(h.finalize().into());
            if actual == self.fill.digest {
                Ok(())
            } else {
                Err(Failure::Digest {
                    expected: self.fill.digest,
                    actual,
                })
            }
        });
        // A write still in flight after a failure must finish before the file goes.
        if let Some((w, _)) = in_flight.take() {
            let _ = w.await;
        }
        match outcome {
            Ok(()) => {
                // Published before followers end, so a client holding the whole blob finds
                // the next request answered from disk.
                if let Err(e) = file.publish().await {
                    tracing::error!(request_id = %self.request_id, error = %e, "content cache: publish failed");
                }
                self.fills.remove(&self.key, &self.slot);
                self.fill.progress.send_modify(|p| {
                    p.written = len;
                    p.end = End::Verified;
                });
            }
            Err(failure) => {
                match &failure {
                    Failure::Digest { expected, actual } => tracing::error!(
                        request_id = %self.request_id, %expected, %actual,
                        "blob digest mismatch: cutting every client of this fill, caching nothing"
                    ),
                    other => tracing::warn!(
                        request_id = %self.request_id, digest = %self.fill.digest, failure = ?other,
                        "blob fill failed: cutting every client of this fill"
                    ),
                }
                self.fills.remove(&self.key, &self.slot);
                drop(file); // the temp file and the reservation go
                self.fill
                    .progress
                    .send_modify(|p| p.end = End::Failed(Arc::new(failure)));
            }
        }
    }

    /// Followers may read up to `written`; the batch just written (`at ..`) is theirs to
    /// take from memory. Returns it, for reuse once they are done with it.
    fn publish_batch(&self, written: u64, at: u64, batch: BytesMut) -> Bytes {
        let bytes = batch.freeze();
        let recent = Recent {
            at,
            bytes: bytes.clone(),
        };
        self.fill.progress.send_modify(|p| {
            p.written = written;
            p.recent = Some(recent);
        });
        bytes
    }
}

/// A client's body following `fill`: bytes `first .. first + count` as they are written,
/// the last chunk held back until the whole fill verified.
pub fn follow(fill: Arc<Fill>, first: u64, count: u64) -> ProxyBody {
    let s = Follower {
        rx: fill.progress.subscribe(),
        reader: crate::cache::Reader::new(fill.file.clone()),
        pos: first,
        end: first + count,
        held: None,
        done: false,
        _fill: fill,
    };
    body::stream(futures_util::stream::unfold(s, |mut s| async move {
        if s.done {
            return None;
        }
        loop {
            // What the fill has for this follower; the borrow ends here, so a follower that
            // waits holds no batch (its buffer can gather another).
            let (avail, end, from_memory) = {
                let p = s.rx.borrow_and_update();
                let avail = p.written.min(s.end);
                let from_memory = p.recent.as_ref().and_then(|r| {
                    let last = r.at + r.bytes.len() as u64;
                    (r.at <= s.pos && s.pos < last.min(avail)).then(|| {
                        r.bytes
                            .slice((s.pos - r.at) as usize..(last.min(avail) - r.at) as usize)
                    })
                });
                (avail, p.end.clone(), from_memory)
            };
            if let End::Failed(f) = &end {
                s.done = true;
                return Some((Err(f.body_error()), s));
            }
            if s.pos < avail {
                // A follower keeping up takes the batch just written, which holds exactly
                // the bytes that were hashed and written; one that fell behind reads them
                // back from the file.
                let chunk = match from_memory {
                    Some(c) => c,
                    None => {
                        let n = (avail - s.pos).min(READ_CHUNK as u64) as usize;
                        match s.reader.read_at(s.pos, n).await {
                            Ok(c) => c,
                            Err(e) => {
                                s.done = true;
                                let reason = e.to_string();
                                return Some((Err(BodyError::Store { reason }), s));
                            }
                        }
                    }
                };
                let n = chunk.len();
                s.pos += n as u64;
                if let Some(prev) = s.held.replace(chunk) {
                    return Some((Ok(prev), s));
                }
                continue;
            }
            if s.pos >= s.end && matches!(end, End::Verified) {
                s.done = true;
                return s.held.take().map(|last| (Ok(last), s));
            }
            if s.rx.changed().await.is_err() {
                // The fill is gone without an end (cannot happen while `fill` is held).
                s.done = true;
                let reason = "blob fill ended without a result".to_string();
                return Some((Err(BodyError::Store { reason }), s));
            }
        }
    }))
}

struct Follower {
    /// Holds the fill (and so its progress sender) while the body lives.
    _fill: Arc<Fill>,
    reader: crate::cache::Reader,
    rx: watch::Receiver<Progress>,
    pos: u64,
    end: u64,
    held: Option<Bytes>,
    done: bool,
}

#[cfg(test)]
#[path = "fill_tests.rs"]
mod tests;
