//! Room for one blob fill in the content store: a reservation of its announced length
//! against `max_bytes`, a free-space check against `min_free_bytes`, and a temp file that
//! readers follow while it is written (PROXY-REVIEW D1, D16).
//!
//! The budget holds because every byte a fill may write is promised before the first one is
//! written: `held + reserved <= max_bytes` at all times (the index evicts least recently used
//! entries to make room), and a fill never writes past its reservation (the proxy cuts an
//! upstream that sends more than it announced). So temp files are inside the budget however
//! many fills run, and a blob larger than the budget is never written at all.

use std::path::Path;
use std::sync::Arc;

use super::disk::{io_err, remove_all, DiskError, DiskStore, Meta, TempFile};
use super::disk_index::FileStamp;
use crate::registry::Digest;

/// A fill's temp file and its reservation. Dropped unpublished, the temp file is removed and
/// the reservation given back.
#[derive(Debug)]
pub struct FillFile {
    reservation: Reservation,
    digest: Digest,
    tmp: Option<TempFile>,
    file: Arc<std::fs::File>,
}

/// Bytes promised to a fill; given back on drop unless the entry took their place.
#[derive(Debug)]
struct Reservation {
    store: DiskStore,
    len: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.len > 0 {
            self.store.index().release(self.len);
        }
    }
}

impl FillFile {
    /// The temp file, opened read-write: the fill writes it with `write_all_at`, readers read
    /// it with `read_at` (positional, so they share the descriptor without sharing an offset).
    /// After publishing it stays the published file (a rename keeps the inode).
    pub fn file(&self) -> &Arc<std::fs::File> {
        &self.file
    }

    /// The length reserved (the announced length of the blob).
    pub fn len(&self) -> u64 {
        self.reservation.len
    }

    pub fn is_empty(&self) -> bool {
        self.reservation.len == 0
    }

    /// Publishes the written file as `digest` (the caller checked it hashed to it): sidecar,
    /// then data renamed into place, indexed inside the reservation, and recorded as verified
    /// (its stamp taken after the rename, which sets the ctime).
    ///
    /// No fsync on this path: a published entry counts as verified only in this process
    /// (the stamp lives in memory), so after a crash every entry is re-hashed on its first
    /// read, and one whose data did not reach the disk is dropped then. The data and the
    /// directory are synced in the background so a clean restart rarely finds one.
    pub async fn publish(mut self) -> Result<(), DiskError> {
        let Some(tmp) = self.tmp.take() else {
            return Ok(());
        };
        let store = self.reservation.store.clone();
        let len = self.reservation.len;
        let digest = self.digest;
        let data = store.data_path(&digest);
        let dir = data.parent().map(Path::to_path_buf).unwrap_or_default();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(io_err("create", &dir))?;
        let meta = match store.read_meta(&digest).await {
            Some(old) if old.manifest && old.size == len => old,
            _ => Meta {
                size: len,
                manifest: false,
                media_type: None,
            },
        };
        let meta_tmp = TempFile::create(store.inner.root.join("tmp")).await?;
        let text = serde_json::to_vec(&meta).unwrap_or_default();
        tokio::fs::write(&meta_tmp.path, &text)
            .await
            .map_err(io_err("write", &meta_tmp.path))?;
        // Sidecar first: a data file is only ever visible next to the record of its size.
        meta_tmp.rename_to(&store.meta_path(&digest)).await?;
        tmp.rename_to(&data).await?;
        let file = self.file.clone();
        let stamp = tokio::task::spawn_blocking(move || file.metadata().map(|m| FileStamp::of(&m)))
            .await
            .ok()
            .and_then(Result::ok);
        let hex = digest.hex();
        {
            let mut ix = store.index();
            ix.release(len);
            ix.insert(&hex, len);
            ix.set_verified(&hex, stamp);
        }
        self.reservation.len = 0; // the entry holds those bytes now
        let victims = store.victims(Some(&hex));
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            remove_all(victims);
            let _ = file.sync_data();
            let _ = std::fs::File::open(&dir).and_then(|d| d.sync_all());
        });
        Ok(())
    }
}

impl DiskStore {
    /// Room for a fill of `digest`, `len` bytes long; `None` (logged) when it is held
    /// already, cannot fit in `max_bytes` beside the fills in progress, would take the
    /// filesystem below `min_free_bytes`, or no temp file could be made. The blob is then
    /// streamed, verified, without being cached.
    pub async fn start_fill(&self, digest: &Digest, len: u64) -> Option<FillFile> {
        if self.contains(digest) {
            return None;
        }
        let reserved = self.index().reserve(len, self.inner.max_bytes);
        let Some(victims) = reserved else {
            tracing::warn!(%digest, len, max_bytes = self.inner.max_bytes, "content cache: no room in the budget for this blob beside the fills in progress; not caching it");
            return None;
        };
        let victims = victims
            .into_iter()
            .map(|hex| self.inner.root.join("sha256").join(&hex[..2]).join(&hex))
            .collect();
        let root = self.inner.root.clone();
        let free = tokio::task::spawn_blocking(move || {
            remove_all(victims);
            free_bytes(&root)
        })
        .await
        .ok()
        .flatten();
        // Given back on every early return from here on.
        let reservation = Reservation {
            store: self.clone(),
            len,
        };
        match free {
            Some(free) if free >= len.saturating_add(self.inner.min_free) => {}
            _ => {
                tracing::warn!(%digest, len, ?free, min_free = self.inner.min_free, "content cache: free space below the floor; not caching this blob");
                return None;
            }
        }
        let tmp = match TempFile::create(self.inner.root.join("tmp")).await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "content cache: cannot start a fill");
                return None;
            }
        };
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&tmp.path);
        match opened {
            Ok(f) => Some(FillFile {
                reservation,
                digest: *digest,
                tmp: Some(tmp),
                file: Arc::new(f),
            }),
            Err(e) => {
                tracing::error!(error = %e, path = %tmp.path.display(), "content cache: cannot open a fill");
                None
            }
        }
    }

    /// Bytes reserved by fills in progress.
    pub fn reserved_bytes(&self) -> u64 {
        self.index().reserved()
    }
}

/// Free bytes available to unprivileged writers on the filesystem holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(path).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}
