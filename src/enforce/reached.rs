//! What was reached through a verified tag, for `digest_pulls = "signed-only"`: kept in
//! memory and under `<state_dir>/reached`, so a restart does not make pods pinned by digest
//! unpullable until someone pulls the tag again. Each record is an empty file named by the
//! sha256 of `registry/repository@digest`; its mtime is when the digest was last reached, and
//! a record older than the TTL no longer counts (the tag must be pulled, and so re-verified,
//! again).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};

pub struct ReachedSet {
    /// When each key was last reached, and when its file was last written.
    memory: moka::sync::Cache<String, Record>,
    dir: PathBuf,
    ttl: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Record {
    last_reach: SystemTime,
    persisted: SystemTime,
}

impl ReachedSet {
    pub fn new(dir: PathBuf, ttl: Duration) -> ReachedSet {
        ReachedSet {
            // The cache's own TTL only bounds how long memory is held; whether a record
            // still counts is decided by its `last_reach`.
            memory: moka::sync::Cache::builder()
                .max_capacity(200_000)
                .time_to_live(ttl)
                .build(),
            dir,
            ttl,
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        let h = hex::encode(Sha256::digest(key.as_bytes()));
        self.dir.join(&h[..2]).join(h)
    }

    /// How stale the file may get before a reach rewrites it: a 24th of the TTL (1 h of
    /// 24 h). Every signed tag pull marks its digests, cache hits included, so writing on
    /// every reach would cost a file write per layer per pull. A file that lags the last
    /// reach only ever makes a record expire *earlier* after a restart (fail closed).
    fn rewrite_after(&self) -> Duration {
        self.ttl / 24
    }

    fn live(&self, r: &Record, now: SystemTime) -> bool {
        now.duration_since(r.last_reach)
            .is_ok_and(|age| age < self.ttl)
    }

    /// Records `key` as reached now: it counts for the TTL from this reach. A failure to
    /// persist is logged: the record then lives in memory only (fail closed after a restart,
    /// never open).
    pub async fn mark(&self, key: String) {
        let now = SystemTime::now();
        if let Some(r) = self.memory.get(&key) {
            let fresh_file = now
                .duration_since(r.persisted)
                .is_ok_and(|age| age < self.rewrite_after());
            if fresh_file {
                self.memory.insert(
                    key,
                    Record {
                        last_reach: now,
                        persisted: r.persisted,
                    },
                );
                return;
            }
        }
        let path = self.path(&key);
        let write = async {
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            // Rewriting refreshes the mtime, which is what the TTL is measured from.
            tokio::fs::write(&path, b"").await
        };
        let persisted = match write.await {
            Ok(()) => now,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot persist a reached digest");
                // Retry the write on the next reach.
                SystemTime::UNIX_EPOCH
            }
        };
        self.memory.insert(
            key,
            Record {
                last_reach: now,
                persisted,
            },
        );
    }

    /// Whether `key` was reached less than the TTL ago (in memory, or as recorded on disk by
    /// an earlier process). Loading a record from disk keeps its age: a restart never
    /// extends it.
    pub async fn contains(&self, key: &str) -> bool {
        let now = SystemTime::now();
        if let Some(r) = self.memory.get(key) {
            if self.live(&r, now) {
                return true;
            }
        }
        let mtime = match tokio::fs::metadata(self.path(key)).await {
            Ok(md) => md.modified().ok(),
            Err(_) => None,
        };
        let Some(mtime) = mtime else {
            return false;
        };
        let r = Record {
            last_reach: mtime,
            persisted: mtime,
        };
        let live = self.live(&r, now);
        if live {
            self.memory.insert(key.to_string(), r);
        }
        live
    }

    /// Deletes the records that no longer count (last reached a TTL ago or more) and the
    /// shard directories they leave empty, so `reached/` holds at most what was reached
    /// within one TTL (PROXY-REVIEW D20). Blocking file-system work: run it off the async
    /// threads. Returns how many records were deleted.
    pub fn sweep(&self) -> usize {
        sweep_dir(&self.dir, self.ttl, SystemTime::now())
    }
}

fn sweep_dir(dir: &std::path::Path, ttl: Duration, now: SystemTime) -> usize {
    crate::cache::sweep_shards(dir, |record| {
        record
            .metadata()
            .and_then(|m| m.modified())
            .map(|mtime| now.duration_since(mtime).is_ok_and(|age| age >= ttl))
            // An unreadable mtime cannot make a record count (`contains`), so it goes too.
            .unwrap_or(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_survive_a_restart_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let a = ReachedSet::new(dir.path().to_path_buf(), Duration::from_secs(3600));
        a.mark("r/x@sha256:1".into()).await;
        assert!(a.contains("r/x@sha256:1").await);
        assert!(
            !a.contains("r/y@sha256:1").await,
            "scoped to the repository"
        );
        let restarted = ReachedSet::new(dir.path().to_path_buf(), Duration::from_secs(3600));
        assert!(restarted.contains("r/x@sha256:1").await);
        let expired = ReachedSet::new(dir.path().to_path_buf(), Duration::ZERO);
        assert!(!expired.contains("r/x@sha256:1").await);
    }

    /// The TTL runs from the *last* reach, even when the record was live in memory when it
    /// was reached again (the regression: a later reach was ignored, so the record expired
    /// TTL after the first one).
    #[tokio::test]
    async fn a_later_reach_restarts_the_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let ttl = Duration::from_millis(2000);
        let set = ReachedSet::new(dir.path().to_path_buf(), ttl);
        set.mark("r/x@sha256:1".into()).await;
        tokio::time::sleep(Duration::from_millis(1300)).await;
        set.mark("r/x@sha256:1".into()).await;
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert!(
            set.contains("r/x@sha256:1").await,
            "reached 1.3 s ago with a 2 s TTL"
        );
        // And a restart sees the later reach too.
        let restarted = ReachedSet::new(dir.path().to_path_buf(), ttl);
        assert!(restarted.contains("r/x@sha256:1").await);
    }

    /// The sweep deletes what no longer counts and keeps what does: `reached/` stays bounded
    /// by what was reached within one TTL.
    #[tokio::test]
    async fn the_sweep_deletes_expired_records_only() {
        let dir = tempfile::tempdir().unwrap();
        let ttl = Duration::from_millis(1500);
        let set = ReachedSet::new(dir.path().to_path_buf(), ttl);
        set.mark("r/old@sha256:1".into()).await;
        tokio::time::sleep(Duration::from_millis(1600)).await;
        set.mark("r/new@sha256:2".into()).await;
        let files = |d: &std::path::Path| walk(d).into_iter().filter(|p| p.is_file()).count();
        assert_eq!(files(dir.path()), 2);
        assert_eq!(set.sweep(), 1, "one record is past its TTL");
        assert_eq!(files(dir.path()), 1);
        assert!(set.contains("r/new@sha256:2").await);
        let restarted = ReachedSet::new(dir.path().to_path_buf(), ttl);
        assert!(!restarted.contains("r/old@sha256:1").await);
        assert!(restarted.contains("r/new@sha256:2").await);
        // The emptied shard directory went with its last record.
        let shards = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(shards, 1);
    }

    fn walk(d: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
        out
    }

    /// A record loaded from disk keeps its age: a restart never extends it.
    #[tokio::test]
    async fn a_restart_does_not_extend_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let ttl = Duration::from_millis(2000);
        ReachedSet::new(dir.path().to_path_buf(), ttl)
            .mark("r/x@sha256:1".into())
            .await;
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let restarted = ReachedSet::new(dir.path().to_path_buf(), ttl);
        assert!(restarted.contains("r/x@sha256:1").await);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(
            !restarted.contains("r/x@sha256:1").await,
            "last reached 2.3 s ago with a 2 s TTL"
        );
    }
}
