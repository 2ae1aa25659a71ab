//! The on-disk content store: verified manifests and blobs by digest, under
//! `<state_dir>/content/sha256/<2 hex>/<64 hex>`, each with a `<64 hex>.meta` sidecar
//! (`{"size":…,"manifest":…,"media_type":…}`). This is what keeps an air-gapped mirror serving
//! after a restart and what spares the upstream repeated layer downloads.
//!
//! Content addressed data cannot be stale, so a held entry is served without asking the
//! upstream. Only verified bytes are ever published: a blob is written to a temp file under
//! `<root>/tmp` while it streams (same filesystem, so the final rename is atomic), hashed by
//! the [`BlobWriter`] itself, and fsynced and renamed into place only when the stream ended
//! and its sha256 equals the digest; otherwise the temp file is removed. A crash leaves at
//! worst temp files, which [`DiskStore::open`] deletes.
//!
//! Beyond `max_bytes` the least recently used entries are deleted. Deleting a file that a
//! request is still streaming is safe: on Linux an unlinked file stays readable through the
//! descriptor already open, so eviction never breaks a read in progress.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::disk_index::{FileStamp, Index};
use crate::registry::Digest;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("content cache: cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub(super) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DiskError {
    let path = path.display().to_string();
    move |source| DiskError::Io { op, path, source }
}

/// The sidecar of one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Meta {
    /// Length of the verified content: a data file of any other length is corrupt.
    pub(super) size: u64,
    /// Published as a manifest (by the manifest path), so it may be served as one.
    #[serde(default)]
    pub(super) manifest: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) media_type: Option<String>,
}

/// An open cached blob, ready to stream.
#[derive(Debug)]
pub struct CachedBlob {
    pub file: tokio::fs::File,
    pub len: u64,
    /// The open file as it was when opened: pass it to [`DiskStore::mark_verified`] once its
    /// whole content hashed to the digest.
    pub stamp: FileStamp,
    /// Whether this very file hashed whole to its digest, in this process, and was not
    /// written since (`stamp` equals the one recorded then): its bytes need no re-hash.
    pub verified: bool,
}

/// The content store; clones share one index.
#[derive(Clone, Debug)]
pub struct DiskStore {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) root: PathBuf,
    pub(super) max_bytes: u64,
    /// Free bytes left on the filesystem no fill may take (`cache.min_free_bytes`).
    pub(super) min_free: u64,
    pub(super) index: Mutex<Index>,
}

impl DiskStore {
    /// Opens (creating) the store at `root`, deletes leftover temp files, indexes the entries
    /// whose data and sidecar agree (deleting the others), and evicts down to `max_bytes`.
    pub fn open(root: impl Into<PathBuf>, max_bytes: u64) -> Result<DiskStore, DiskError> {
        DiskStore::open_with_floor(root, max_bytes, 0)
    }

    /// As [`DiskStore::open`], never letting a fill take the filesystem's free space below
    /// `min_free` bytes.
    pub fn open_with_floor(
        root: impl Into<PathBuf>,
        max_bytes: u64,
        min_free: u64,
    ) -> Result<DiskStore, DiskError> {
        let root = root.into();
        let tmp = root.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_err("clean", &tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io_err("create", &tmp))?;
        let sha = root.join("sha256");
        std::fs::create_dir_all(&sha).map_err(io_err("create", &sha))?;
        let mut found = Vec::new();
        for shard in std::fs::read_dir(&sha).map_err(io_err("read", &sha))? {
            let shard = shard.map_err(io_err("read", &sha))?.path();
            if !shard.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(&shard).map_err(io_err("read", &shard))? {
                let p = f.map_err(io_err("read", &shard))?.path();
                let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if is_hex64(name) {
                    match scan_entry(&p) {
                        Some((size, mtime)) => found.push((mtime, name.to_string(), size)),
                        None => {
                            tracing::warn!(path = %p.display(), "content cache: dropping an entry whose size does not match its record");
                            remove_pair(&p);
                        }
                    }
                } else if let Some(hex) = name.strip_suffix(".meta") {
                    if !is_hex64(hex) || !shard.join(hex).exists() {
                        let _ = std::fs::remove_file(&p);
                    }
                }
            }
        }
        found.sort();
        let mut index = Index::default();
        for (_, hex, size) in found {
            index.insert(&hex, size);
        }
        let store = DiskStore {
            inner: Arc::new(Inner {
                root,
                max_bytes,
                min_free,
                index: Mutex::new(index),
            }),
        };
        store.evict(None);
        store.prune_links();
        Ok(store)
    }

    /// Deletes links to content no longer held, and emptied link directories (PROXY-REVIEW
    /// D20: eviction leaves links behind; they are swept at start and by the periodic
    /// maintenance, so they stay bounded by what is held plus what was linked since the last
    /// sweep). Blocking file-system work. Returns how many links were deleted.
    pub fn prune_links(&self) -> usize {
        // The index is locked per entry, never across the walk: requests use it meanwhile.
        super::sweep_shards(&self.inner.root.join("links"), |e| {
            !e.file_name()
                .to_str()
                .is_some_and(|h| self.index().contains(h))
        })
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Bytes of content held.
    pub fn held_bytes(&self) -> u64 {
        self.index().total()
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.index().contains(&digest.hex())
    }

    /// Where `digest`'s content lives.
    pub fn data_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.inner.root.join("sha256").join(&hex[..2]).join(hex)
    }

    /// `links/<sha256(scope)>/<hex>`: the record that the upstream confirmed `scope`
    /// (`registry/repository`) holds `digest`. Content is stored once, but served only under
    /// a linked scope, as a registry links blobs to repositories — so cached content never
    /// crosses into a repository (or a policy rule) it was not fetched for.
    fn link_path(&self, scope: &str, digest: &Digest) -> PathBuf {
        let scope_id = hex::encode(Sha256::digest(scope.as_bytes()));
        self.inner
            .root
            .join("links")
            .join(&scope_id[..32])
            .join(digest.hex())
    }

    /// Records that `scope` holds `digest` (after the upstream served it for `scope`).
    /// Failures are logged: the content is then simply not served from disk for `scope`.
    pub async fn link(&self, scope: &str, digest: &Digest) {
        let path = self.link_path(scope, digest);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return;
        }
        let write = async {
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            tokio::fs::write(&path, b"").await
        };
        if let Err(e) = write.await {
            tracing::error!(path = %path.display(), error = %e, "content cache: cannot link");
        }
    }

    /// Whether `scope` was linked to `digest` by [`DiskStore::link`].
    pub async fn is_linked(&self, scope: &str, digest: &Digest) -> bool {
        tokio::fs::try_exists(self.link_path(scope, digest))
            .await
            .unwrap_or(false)
    }

    pub(super) fn meta_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        let name = format!("{hex}.meta");
        self.inner.root.join("sha256").join(&hex[..2]).join(name)
    }

    pub(super) fn index(&self) -> MutexGuard<'_, Index> {
        // A panic while holding the lock cannot leave the index inconsistent with anything
        // but the files, which every read re-checks; keep going.
        self.inner.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops `digest` from the index and deletes its files (found corrupt, or missing).
    pub fn forget(&self, digest: &Digest) {
        self.index().remove(&digest.hex());
        remove_pair(&self.data_path(digest));
    }

    pub(super) async fn read_meta(&self, digest: &Digest) -> Option<Meta> {
        let bytes = tokio::fs::read(self.meta_path(digest)).await.ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The blob `digest`, opened, when its length still agrees with the sidecar and the index
    /// (one `fstat`; a truncated entry is deleted so the next request refetches it). Its
    /// content is not checked here: the reader re-hashes it while streaming and calls
    /// [`DiskStore::forget`] on a mismatch (`proxy::cached`).
    pub async fn open_blob(&self, digest: &Digest) -> Option<CachedBlob> {
        let hex = digest.hex();
        let recorded = self.index().touch(&hex)?;
        let path = self.data_path(digest);
        let opened = async {
            let file = tokio::fs::File::open(&path).await.ok()?;
            let md = file.metadata().await.ok()?;
            let len = md.len();
            let meta = self.read_meta(digest).await?;
            let stamp = FileStamp::of(&md);
            let verified = self.index().verified(&hex) == Some(stamp);
            let blob = CachedBlob {
                file,
                len,
                stamp,
                verified,
            };
            (len == meta.size && len == recorded).then_some((blob, md))
        }
        .await;
        let opened = match opened {
            Some((mut blob, md)) => {
                if touch_if_stale(&path, md.modified().ok()).await {
                    // Setting the mtime moves the ctime too; it wrote no content, so a
                    // verified file stays verified under its new stamp.
                    if let Ok(md) = blob.file.metadata().await {
                        blob.stamp = FileStamp::of(&md);
                        if blob.verified {
                            self.mark_verified(digest, blob.stamp);
                        }
                    }
                }
                Some(blob)
            }
            None => None,
        };
        if opened.is_none() {
            tracing::warn!(path = %path.display(), "content cache: entry missing or corrupt, dropped");
            self.forget(digest);
        }
        opened
    }

    /// Records that `digest`'s file, as `stamp` describes it, hashed whole to the digest
    /// (by a reader that just streamed all of it, or by the fill that wrote it).
    pub fn mark_verified(&self, digest: &Digest, stamp: FileStamp) {
        self.index().set_verified(&digest.hex(), Some(stamp));
    }

    /// The manifest `digest` and its media type, when held as a manifest and at most
    /// `max_len` bytes. Its bytes are re-hashed on every read (manifests are small, and they
    /// are what signatures cover); a mismatch deletes the entry.
    pub async fn get_manifest(&self, digest: &Digest, max_len: u64) -> Option<CachedManifestFile> {
        self.index().touch(&digest.hex())?;
        let meta = self.read_meta(digest).await;
        let meta = match meta {
            Some(m) if m.manifest && m.size <= max_len => m,
            // Held, but only as a blob (or too large to be a manifest): not an answer here.
            Some(_) => return None,
            None => {
                self.forget(digest);
                return None;
            }
        };
        let path = self.data_path(digest);
        // Read at most one byte more than recorded: a file grown by damage costs no more.
        let read = async {
            let f = tokio::fs::File::open(&path).await?;
            let mut bytes = Vec::new();
            f.take(meta.size + 1).read_to_end(&mut bytes).await?;
            Ok::<_, std::io::Error>(bytes)
        };
        match read.await {
            Ok(bytes) if Digest::sha256_of(&bytes) == *digest => {
                let modified = tokio::fs::metadata(&path).await.and_then(|m| m.modified());
                touch_if_stale(&path, modified.ok()).await;
                Some(CachedManifestFile {
                    bytes: Bytes::from(bytes),
                    media_type: meta.media_type,
                })
            }
            _ => {
                tracing::warn!(path = %path.display(), "content cache: manifest missing or corrupt, dropped");
                self.forget(digest);
                None
            }
        }
    }

    /// Publishes verified manifest bytes (checked again here: nothing enters the store under a
    /// digest it does not have).
    pub async fn put_manifest(
        &self,
        digest: &Digest,
        media_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<bool, DiskError> {
        if Digest::sha256_of(bytes) != *digest {
            return Ok(false);
        }
        let tmp = TempFile::create(self.inner.root.join("tmp")).await?;
        let mut file = tmp.open().await?;
        file.write_all(bytes)
            .await
            .map_err(io_err("write", &tmp.path))?;
        let meta = Meta {
            size: bytes.len() as u64,
            manifest: true,
            media_type: media_type.filter(|t| !t.is_empty()).map(str::to_string),
        };
        self.publish(digest, tmp, file, meta).await?;
        Ok(true)
    }

    /// A writer that publishes `digest` if what is fed to it hashes to it; `None` when the
    /// store cannot take it (already held, larger than the whole budget, or a temp file
    /// could not be created; the last is logged: serving goes on without caching).
    pub async fn blob_writer(
        &self,
        digest: &Digest,
        announced_len: Option<u64>,
    ) -> Option<BlobWriter> {
        if self.contains(digest) || announced_len.is_some_and(|l| l > self.inner.max_bytes) {
            return None;
        }
        let tmp = match TempFile::create(self.inner.root.join("tmp")).await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "content cache: cannot start a write");
                return None;
            }
        };
        let file = match tmp.open().await {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "content cache: cannot start a write");
                return None;
            }
        };
        Some(BlobWriter {
            store: self.clone(),
            expected: *digest,
            tmp: Some(tmp),
            file: Some(file),
            hasher: Sha256::new(),
            written: 0,
        })
    }

    /// fsync the data, write the sidecar, rename both into place, fsync the directory, index.
    async fn publish(
        &self,
        digest: &Digest,
        tmp: TempFile,
        mut file: tokio::fs::File,
        meta: Meta,
    ) -> Result<(), DiskError> {
        file.flush().await.map_err(io_err("flush", &tmp.path))?;
        file.sync_all().await.map_err(io_err("fsync", &tmp.path))?;
        drop(file);
        let data = self.data_path(digest);
        let dir = data.parent().map(Path::to_path_buf).unwrap_or_default();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(io_err("create", &dir))?;
        let meta_path = self.meta_path(digest);
        // A blob write never downgrades an entry already published as a manifest (same bytes).
        let meta = match self.read_meta(digest).await {
            Some(old) if old.manifest && !meta.manifest && old.size == meta.size => old,
            _ => meta,
        };
        let meta_tmp = TempFile::create(self.inner.root.join("tmp")).await?;
        let mut mf = meta_tmp.open().await?;
        let text = serde_json::to_vec(&meta).unwrap_or_default();
        mf.write_all(&text)
            .await
            .map_err(io_err("write", &meta_tmp.path))?;
        mf.sync_all()
            .await
            .map_err(io_err("fsync", &meta_tmp.path))?;
        drop(mf);
        // Sidecar first: a data file is only ever visible next to the record of its size.
        meta_tmp.rename_to(&meta_path).await?;
        tmp.rename_to(&data).await?;
        let d = dir.clone();
        let _ =
            tokio::task::spawn_blocking(move || std::fs::File::open(&d).and_then(|f| f.sync_all()))
                .await;
        self.index().insert(&digest.hex(), meta.size);
        let victims = self.victims(Some(&digest.hex()));
        if !victims.is_empty() {
            // Many deletions can take a while; keep them off the async workers.
            let _ = tokio::task::spawn_blocking(move || remove_all(victims)).await;
        }
        Ok(())
    }

    /// Deletes least recently used entries beyond the budget (at startup).
    fn evict(&self, keep: Option<&str>) {
        remove_all(self.victims(keep));
    }

    /// Takes the least recently used entries beyond the budget out of the index; their files
    /// are deleted after the lock is let go.
    pub(super) fn victims(&self, keep: Option<&str>) -> Vec<PathBuf> {
        let victims = self.index().evict_to(self.inner.max_bytes, keep);
        victims
            .into_iter()
            .map(|hex| self.inner.root.join("sha256").join(&hex[..2]).join(&hex))
            .collect()
    }
}

/// A cached manifest read back from disk (digest re-checked).
#[derive(Debug, Clone)]
pub struct CachedManifestFile {
    pub bytes: Bytes,
    pub media_type: Option<String>,
}

/// Tees a streamed blob into the store. Dropped without [`BlobWriter::finish`] (the client
/// went away, the upstream broke), its temp file is removed.
#[derive(Debug)]
pub struct BlobWriter {
    store: DiskStore,
    expected: Digest,
    tmp: Option<TempFile>,
    /// `None` once a write failed: hashing goes on, caching stops.
    file: Option<tokio::fs::File>,
    hasher: Sha256,
    written: u64,
}

/// What a finished write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// The sha256 of everything fed.
    pub actual: Digest,
    /// Whether the content is now in the store.
    pub published: bool,
}

impl BlobWriter {
    /// Hashes `chunk` and appends it to the temp file. A disk error ends the caching of this
    /// blob (logged), never the stream being served.
    pub async fn feed(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        self.written += chunk.len() as u64;
        if let Some(f) = self.file.as_mut() {
            if let Err(e) = f.write_all(chunk).await {
                tracing::error!(error = %e, digest = %self.expected, "content cache: write failed, not caching this blob");
                self.file = None;
                self.tmp = None;
            }
        }
    }

    /// Ends the stream: publishes the content only if it hashes to the expected digest.
    pub async fn finish(mut self) -> Finished {
        let actual = Digest::from_sha256_bytes(self.hasher.clone().finalize().into());
        let mut published = false;
        if actual == self.expected {
            if let (Some(tmp), Some(file)) = (self.tmp.take(), self.file.take()) {
                let meta = Meta {
                    size: self.written,
                    manifest: false,
                    media_type: None,
                };
                match self.store.publish(&self.expected, tmp, file, meta).await {
                    Ok(()) => published = true,
                    Err(e) => tracing::error!(error = %e, "content cache: publish failed"),
                }
            }
        }
        Finished { actual, published }
    }
}

/// A uniquely named file under the store's `tmp` directory, removed on drop unless renamed.
#[derive(Debug)]
pub(super) struct TempFile {
    pub(super) path: PathBuf,
    renamed: bool,
}

impl TempFile {
    pub(super) async fn create(dir: PathBuf) -> Result<TempFile, DiskError> {
        let name = format!("{}.tmp", hex::encode(rand::random::<[u8; 12]>()));
        let path = dir.join(name);
        tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(io_err("create", &path))?;
        Ok(TempFile {
            path,
            renamed: false,
        })
    }

    async fn open(&self) -> Result<tokio::fs::File, DiskError> {
        tokio::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .await
            .map_err(io_err("open", &self.path))
    }

    pub(super) async fn rename_to(mut self, to: &Path) -> Result<(), DiskError> {
        tokio::fs::rename(&self.path, to)
            .await
            .map_err(io_err("rename", to))?;
        self.renamed = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.renamed {
            if let Err(e) = std::fs::remove_file(&self.path) {
                if e.kind() != ErrorKind::NotFound {
                    tracing::warn!(path = %self.path.display(), error = %e, "content cache: temp file left behind");
                }
            }
        }
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The entry's size and mtime, when its sidecar records exactly the data file's length.
fn scan_entry(data: &Path) -> Option<(u64, std::time::SystemTime)> {
    let md = std::fs::metadata(data).ok()?;
    let mut meta_path = data.as_os_str().to_owned();
    meta_path.push(".meta");
    let meta: Meta = serde_json::from_slice(&std::fs::read(meta_path).ok()?).ok()?;
    (meta.size == md.len()).then(|| (md.len(), md.modified().unwrap_or(std::time::UNIX_EPOCH)))
}

/// How old a file's mtime may get before a read refreshes it.
const TOUCH_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Use order lives in memory; on disk it survives a restart as the files' mtimes, which the
/// startup scan sorts by. Refreshing the mtime on every read would cost a syscall per request,
/// so a read refreshes it only when it is over [`TOUCH_AFTER`] old: the order after a restart
/// is then right to within that. Whether it touched.
async fn touch_if_stale(path: &Path, modified: Option<std::time::SystemTime>) -> bool {
    let now = std::time::SystemTime::now();
    let stale = modified
        .and_then(|m| now.duration_since(m).ok())
        .is_none_or(|age| age > TOUCH_AFTER);
    if stale {
        let p = path.to_path_buf();
        let _ = tokio::task::spawn_blocking(move || {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .and_then(|f| f.set_modified(now))
        })
        .await;
    }
    stale
}

pub(super) fn remove_all(paths: Vec<PathBuf>) {
    for p in paths {
        tracing::debug!(path = %p.display(), "content cache: evicted");
        remove_pair(&p);
    }
}

/// Deletes a data file and its sidecar (either may already be gone).
fn remove_pair(data: &Path) {
    let _ = std::fs::remove_file(data);
    let mut meta = data.as_os_str().to_owned();
    meta.push(".meta");
    let _ = std::fs::remove_file(PathBuf::from(meta));
}

#[cfg(test)]
#[path = "disk_tests.rs"]
mod tests;
