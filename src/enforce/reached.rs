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
    memory: moka::sync::Cache<String, ()>,
    dir: PathBuf,
    ttl: Duration,
}

impl ReachedSet {
    pub fn new(dir: PathBuf, ttl: Duration) -> ReachedSet {
        ReachedSet {
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

    /// Records `key` as reached now. A failure to persist is logged: the record then lives in
    /// memory only (fail closed after a restart, never open).
    pub async fn mark(&self, key: String) {
        // Every signed tag pull marks its digests, cache hits included: while the record is
        // live in memory (same TTL as the file) the file is fresh enough, so skip the write.
        if self.memory.contains_key(&key) {
            return;
        }
        let path = self.path(&key);
        self.memory.insert(key, ());
        let write = async {
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            // Rewriting refreshes the mtime, which is what the TTL is measured from.
            tokio::fs::write(&path, b"").await
        };
        if let Err(e) = write.await {
            tracing::warn!(path = %path.display(), error = %e, "cannot persist a reached digest");
        }
    }

    pub async fn contains(&self, key: &str) -> bool {
        if self.memory.contains_key(key) {
            return true;
        }
        let fresh = match tokio::fs::metadata(self.path(key)).await {
            Ok(md) => md
                .modified()
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age < self.ttl),
            Err(_) => false,
        };
        if fresh {
            self.memory.insert(key.to_string(), ());
        }
        fresh
    }
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
}
