//! Verified manifests by digest, weighted by size.

use bytes::Bytes;
use moka::future::Cache;
use sha2::{Digest as _, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum ManifestCacheError {
    #[error(
        "manifest bytes hash to {actual}, not to the digest {expected} they were offered under"
    )]
    DigestMismatch { expected: String, actual: String },
}

/// Manifest bytes exactly as the upstream served them (never re-encoded), and their media type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedManifest {
    pub media_type: String,
    pub bytes: Bytes,
}

/// Manifests by scope and canonical digest (`sha256:<64 lowercase hex>`), at most `max_bytes`
/// in total.
/// Content-addressed entries never go stale, so they live until evicted for space.
#[derive(Clone)]
pub struct ManifestCache {
    inner: Cache<String, CachedManifest>,
}

impl ManifestCache {
    pub fn new(max_bytes: u64) -> Self {
        let inner = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &String, v: &CachedManifest| {
                let w = k.len() + v.media_type.len() + v.bytes.len();
                u32::try_from(w).unwrap_or(u32::MAX)
            })
            .build();
        ManifestCache { inner }
    }

    /// Bytes held, without waiting for pending maintenance (approximate; for the gauge).
    pub fn held_bytes(&self) -> u64 {
        self.inner.weighted_size()
    }

    /// Stores `manifest` as `digest` within `scope` (`registry/repository`: a digest seen in
    /// one repository is never served from another) after checking that its bytes hash to
    /// `digest`, so a bug elsewhere can never make the cache serve bytes under a digest they
    /// do not have.
    pub async fn insert(
        &self,
        scope: &str,
        digest: &str,
        manifest: CachedManifest,
    ) -> Result<(), ManifestCacheError> {
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&manifest.bytes)));
        if actual != digest {
            return Err(ManifestCacheError::DigestMismatch {
                expected: digest.to_string(),
                actual,
            });
        }
        self.inner.insert(key(scope, &actual), manifest).await;
        Ok(())
    }

    pub async fn get(&self, scope: &str, digest: &str) -> Option<CachedManifest> {
        self.inner.get(&key(scope, digest)).await
    }

    /// Total weight held, after pending evictions have run (for tests and metrics).
    pub async fn weighted_size(&self) -> u64 {
        self.inner.run_pending_tasks().await;
        self.inner.weighted_size()
    }
}

fn key(scope: &str, digest: &str) -> String {
    format!("{scope}@{digest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(body: &str) -> (String, CachedManifest) {
        let bytes = Bytes::from(body.to_string());
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        let m = CachedManifest {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            bytes,
        };
        (digest, m)
    }

    #[tokio::test]
    async fn stores_and_returns_exact_bytes_by_digest() {
        let cache = ManifestCache::new(1 << 20);
        let (d, m) = manifest("{\"schemaVersion\":2}");
        cache.insert("r.io/app", &d, m.clone()).await.unwrap();
        assert_eq!(cache.get("r.io/app", &d).await, Some(m));
    }

    #[tokio::test]
    async fn an_entry_is_served_only_within_its_scope() {
        let cache = ManifestCache::new(1 << 20);
        let (d, m) = manifest("{\"schemaVersion\":2}");
        cache.insert("r.io/app", &d, m).await.unwrap();
        assert_eq!(cache.get("r.io/other", &d).await, None);
        assert_eq!(cache.get("other.io/app", &d).await, None);
    }

    #[tokio::test]
    async fn refuses_bytes_under_a_digest_they_do_not_have() {
        let cache = ManifestCache::new(1 << 20);
        let (d, _) = manifest("signed");
        let (_, other) = manifest("something else");
        let err = cache.insert("r.io/app", &d, other).await.unwrap_err();
        assert!(
            matches!(err, ManifestCacheError::DigestMismatch { ref expected, .. } if *expected == d)
        );
        assert_eq!(cache.get("r.io/app", &d).await, None);
    }

    #[tokio::test]
    async fn total_size_stays_within_the_byte_budget() {
        let cache = ManifestCache::new(10_000);
        for i in 0..50 {
            let (d, m) = manifest(&format!("{i:0>1000}"));
            cache.insert("r.io/app", &d, m).await.unwrap();
        }
        let held = cache.weighted_size().await;
        assert!(held <= 10_000, "held {held} bytes");
        assert!(held > 0);
    }
}
