//! Verified tag results, single-flight, bounded by the metadata's own expiry.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;
use time::OffsetDateTime;

/// What a verified tag result depends on. Two policies that accept different roles for the
/// same tag must not share a result, nor may two trust servers, nor two rules that pin the
/// same GUN differently (PROXY-REVIEW D14), so all of it is in the key: a reload that changes
/// any of it for a rule makes that rule's next pull resolve afresh, while rules it leaves
/// alone keep their entries.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TagKey {
    /// The trust server's base URL, as configured.
    pub trust_server: String,
    /// What else decides the result: the pinning, credentials, CA file and deadline of the
    /// trust client that verified it (an opaque hash), so a rule that pins a root never reuses
    /// what a trust-on-first-use rule verified for the same GUN, and a reload that tightens
    /// pinning takes effect at once.
    pub verifier: String,
    pub gun: String,
    pub tag: String,
    /// Accepted signer roles in priority order.
    pub roles: Vec<String>,
    /// Whether every role in `roles` must have signed the same digest (instead of the first
    /// role that has the tag deciding).
    pub all_roles_required: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct TagCacheSettings {
    /// Most entries kept; least-recently/frequently used ones go first.
    pub max_entries: u64,
    /// Longest time a verified result is reused, even when its metadata lives longer.
    pub ttl: Duration,
    /// On a hit whose entry has less than this left to live, a background resolution replaces
    /// it (see [`TagCache::get_or_refresh`]), so a hot tag never waits for the trust server.
    /// Zero disables refreshing ahead.
    pub refresh_ahead: Duration,
}

impl Default for TagCacheSettings {
    fn default() -> Self {
        TagCacheSettings {
            max_entries: 10_000,
            ttl: Duration::from_secs(300),
            refresh_ahead: Duration::from_secs(60),
        }
    }
}

/// How long a result may be reused: never past the moment its metadata expires (an expired
/// result must be re-verified, and refused if it cannot be), and never longer than the
/// configured TTL (so revocations published at the trust server are seen within it).
pub fn entry_ttl(
    configured: Duration,
    now: OffsetDateTime,
    expires_at: OffsetDateTime,
) -> Duration {
    let left = expires_at - now;
    if left <= time::Duration::ZERO {
        return Duration::ZERO;
    }
    let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
    configured.min(left)
}

#[derive(Clone)]
struct Entry<V> {
    value: V,
    ttl: Duration,
    stored_at: Instant,
}

/// Each entry carries its own lifetime, computed when it was resolved.
struct PerEntryTtl;

impl<V> Expiry<TagKey, Entry<V>> for PerEntryTtl {
    fn expire_after_create(&self, _: &TagKey, e: &Entry<V>, _: Instant) -> Option<Duration> {
        Some(e.ttl)
    }

    fn expire_after_update(
        &self,
        _: &TagKey,
        e: &Entry<V>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        // A refreshed entry gets the lifetime of its new result, not the rest of the old one.
        Some(e.ttl)
    }
}

type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;
type ExpiresAt<V> = Arc<dyn Fn(&V) -> OffsetDateTime + Send + Sync>;

/// Cache of verified tag results. `V` is the verified value (cheap to clone, e.g. an `Arc` or
/// a small struct); `expires_at` tells when a value's trust metadata expires.
///
/// ```
/// use std::sync::Arc;
/// use time::OffsetDateTime;
/// use trustgate::cache::{TagCache, TagCacheSettings, TagKey};
///
/// #[derive(Clone)]
/// struct Verified { digest: String, expires: OffsetDateTime }
///
/// struct Trust;
/// impl Trust {
///     async fn resolve(&self, _gun: &str, _tag: &str) -> Result<Verified, std::io::Error> {
///         Ok(Verified {
///             digest: "sha256:00".into(),
///             expires: OffsetDateTime::now_utc() + time::Duration::days(1),
///         })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let cache = TagCache::new(TagCacheSettings::default(), |v: &Verified| v.expires);
/// let trust = Arc::new(Trust);
/// let key = TagKey {
///     trust_server: "https://notary.example".into(),
///     verifier: "0123abcd".into(),
///     gun: "registry.example/app".into(),
///     tag: "1.0".into(),
///     roles: vec!["targets/releases".into(), "targets".into()],
///     all_roles_required: false,
/// };
/// // The resolver is a factory so it can also run again in the background (refresh-ahead).
/// let (gun, tag) = (key.gun.clone(), key.tag.clone());
/// let verified = cache
///     .get_or_refresh(key, move || {
///         let (trust, gun, tag) = (trust.clone(), gun.clone(), tag.clone());
///         async move { trust.resolve(&gun, &tag).await }
///     })
///     .await;
/// assert_eq!(verified.map(|v| v.digest).ok().as_deref(), Some("sha256:00"));
/// # }
/// ```
pub struct TagCache<V: Clone + Send + Sync + 'static> {
    inner: Cache<TagKey, Entry<V>>,
    settings: TagCacheSettings,
    expires_at: ExpiresAt<V>,
    clock: Clock,
    refreshing: Arc<Mutex<HashSet<TagKey>>>,
}

impl<V: Clone + Send + Sync + 'static> Clone for TagCache<V> {
    fn clone(&self) -> Self {
        TagCache {
            inner: self.inner.clone(),
            settings: self.settings,
            expires_at: self.expires_at.clone(),
            clock: self.clock.clone(),
            refreshing: self.refreshing.clone(),
        }
    }
}

impl<V: Clone + Send + Sync + 'static> TagCache<V> {
    pub fn new(
        settings: TagCacheSettings,
        expires_at: impl Fn(&V) -> OffsetDateTime + Send + Sync + 'static,
    ) -> Self {
        Self::with_clock(settings, expires_at, OffsetDateTime::now_utc)
    }

    /// As [`TagCache::new`], with the wall clock the metadata expiry is compared against
    /// supplied by the caller (tests).
    pub fn with_clock(
        settings: TagCacheSettings,
        expires_at: impl Fn(&V) -> OffsetDateTime + Send + Sync + 'static,
        clock: impl Fn() -> OffsetDateTime + Send + Sync + 'static,
    ) -> Self {
        let inner = Cache::builder()
            .max_capacity(settings.max_entries)
            .expire_after(PerEntryTtl)
            .build();
        TagCache {
            inner,
            settings,
            expires_at: Arc::new(expires_at),
            clock: Arc::new(clock),
            refreshing: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    fn entry(&self, value: V) -> Entry<V> {
        let ttl = entry_ttl(self.settings.ttl, (self.clock)(), (self.expires_at)(&value));
        Entry {
            value,
            ttl,
            stored_at: Instant::now(),
        }
    }

    /// The cached value for `key`, if one is held and still within its lifetime.
    pub async fn get(&self, key: &TagKey) -> Option<V> {
        self.live(key).await.map(|e| e.value)
    }

    async fn live(&self, key: &TagKey) -> Option<Entry<V>> {
        let e = self.inner.get(key).await?;
        // moka evicts lazily; never hand out an entry past its own lifetime.
        (e.stored_at.elapsed() < e.ttl).then_some(e)
    }

    /// The cached value, or the result of `resolve`. Concurrent calls for one key while it is
    /// being resolved wait for that one resolution and share its result, error included.
    /// Errors are not cached: the next call after a failure resolves again.
    pub async fn get_or_resolve<Fut, E>(&self, key: TagKey, resolve: Fut) -> Result<V, Arc<E>>
    where
        Fut: Future<Output = Result<V, E>>,
        E: Send + Sync + 'static,
    {
        if let Some(e) = self.inner.get(&key).await {
            if e.stored_at.elapsed() < e.ttl {
                return Ok(e.value);
            }
            // moka evicts lazily; a stale entry must not satisfy try_get_with below.
            self.inner.invalidate(&key).await;
        }
        let this = self.clone();
        self.inner
            .try_get_with(key, async move { resolve.await.map(|v| this.entry(v)) })
            .await
            .map(|e| e.value)
    }

    /// As [`TagCache::get_or_resolve`], and when a hit has less than `refresh_ahead` left to
    /// live, `resolver` runs once in the background and its result replaces the entry. A
    /// failed background resolution leaves the old entry to expire on its own.
    pub async fn get_or_refresh<F, Fut, E>(&self, key: TagKey, resolver: F) -> Result<V, Arc<E>>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        if let Some(e) = self.live(&key).await {
            let left = e.ttl.saturating_sub(e.stored_at.elapsed());
            if left < self.settings.refresh_ahead {
                self.spawn_refresh(key, resolver);
            }
            return Ok(e.value);
        }
        self.get_or_resolve(key, resolver()).await
    }

    fn spawn_refresh<F, Fut, E>(&self, key: TagKey, resolver: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        {
            let mut inflight = match self.refreshing.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            if !inflight.insert(key.clone()) {
                return;
            }
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Ok(v) = resolver().await {
                let entry = this.entry(v);
                this.inner.insert(key.clone(), entry).await;
            }
            let mut inflight = match this.refreshing.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            inflight.remove(&key);
        });
    }

    pub async fn invalidate(&self, key: &TagKey) {
        self.inner.invalidate(key).await;
    }

    /// Results held (approximate, as moka counts).
    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }

    pub fn invalidate_all(&self) {
        self.inner.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Clone, Debug, PartialEq)]
    struct Verified {
        digest: String,
        expires: OffsetDateTime,
    }

    fn key(tag: &str) -> TagKey {
        TagKey {
            trust_server: "https://notary.test".into(),
            verifier: "v".into(),
            gun: "registry.test/app".into(),
            tag: tag.into(),
            roles: vec!["targets/releases".into(), "targets".into()],
            all_roles_required: false,
        }
    }

    fn settings(ttl: Duration) -> TagCacheSettings {
        TagCacheSettings {
            max_entries: 100,
            ttl,
            refresh_ahead: Duration::ZERO,
        }
    }

    fn cache(ttl: Duration) -> TagCache<Verified> {
        TagCache::new(settings(ttl), |v: &Verified| v.expires)
    }

    fn verified(digest: &str, lives: time::Duration) -> Verified {
        Verified {
            digest: digest.into(),
            expires: OffsetDateTime::now_utc() + lives,
        }
    }

    #[test]
    fn ttl_is_the_smaller_of_configured_and_time_to_expiry() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let hour = Duration::from_secs(3600);
        assert_eq!(entry_ttl(hour, now, now + time::Duration::days(1)), hour);
        assert_eq!(
            entry_ttl(hour, now, now + time::Duration::seconds(5)),
            Duration::from_secs(5)
        );
        assert_eq!(entry_ttl(hour, now, now), Duration::ZERO);
        assert_eq!(
            entry_ttl(hour, now, now - time::Duration::days(1)),
            Duration::ZERO
        );
    }

    #[tokio::test]
    async fn fifty_concurrent_lookups_share_one_resolution() {
        let cache = cache(Duration::from_secs(60));
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, calls, gate) = (cache.clone(), calls.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_resolve(key("1.0"), async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        // Hold the resolution open until every caller has queued behind it.
                        drop(gate.acquire().await);
                        Ok::<_, std::io::Error>(verified("sha256:aa", time::Duration::days(1)))
                    })
                    .await
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        gate.add_permits(1);
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().digest, "sha256:aa");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn hit_does_not_resolve_again_and_keys_are_distinct() {
        let cache = cache(Duration::from_secs(60));
        let calls = AtomicUsize::new(0);
        for _ in 0..3 {
            let v = cache
                .get_or_resolve(key("1.0"), async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, std::io::Error>(verified("sha256:aa", time::Duration::days(1)))
                })
                .await
                .unwrap();
            assert_eq!(v.digest, "sha256:aa");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let mut other_roles = key("1.0");
        other_roles.roles = vec!["targets/ci".into()];
        assert_eq!(cache.get(&other_roles).await, None);
        assert!(cache.get(&key("1.0")).await.is_some());
    }

    #[tokio::test]
    async fn errors_are_shared_but_not_cached() {
        let cache = cache(Duration::from_secs(60));
        let r = cache
            .get_or_resolve(key("x"), async {
                Err::<Verified, _>(std::io::Error::other("trust server down"))
            })
            .await;
        assert!(r.is_err());
        let v = cache
            .get_or_resolve(key("x"), async {
                Ok::<_, std::io::Error>(verified("sha256:bb", time::Duration::days(1)))
            })
            .await
            .unwrap();
        assert_eq!(v.digest, "sha256:bb");
    }

    #[tokio::test]
    async fn a_result_whose_metadata_has_expired_is_never_reused() {
        let cache = cache(Duration::from_secs(3600));
        let calls = AtomicUsize::new(0);
        for _ in 0..2 {
            cache
                .get_or_resolve(key("old"), async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, std::io::Error>(verified("sha256:cc", -time::Duration::seconds(1)))
                })
                .await
                .unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(cache.get(&key("old")).await, None);
    }

    #[tokio::test]
    async fn entry_lifetime_is_bounded_by_metadata_expiry_not_just_ttl() {
        // The metadata expires 300 ms from "now" although the configured TTL is an hour.
        let cache = cache(Duration::from_secs(3600));
        let v = verified("sha256:dd", time::Duration::milliseconds(300));
        let r = cache
            .get_or_resolve(key("soon"), async { Ok::<_, std::io::Error>(v.clone()) })
            .await
            .unwrap();
        assert_eq!(r, v);
        assert!(cache.get(&key("soon")).await.is_some());
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(cache.get(&key("soon")).await, None);
    }

    #[tokio::test]
    async fn entry_lifetime_is_bounded_by_configured_ttl() {
        let cache = cache(Duration::from_millis(200));
        cache
            .get_or_resolve(key("t"), async {
                Ok::<_, std::io::Error>(verified("sha256:ee", time::Duration::days(1)))
            })
            .await
            .unwrap();
        assert!(cache.get(&key("t")).await.is_some());
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(cache.get(&key("t")).await, None);
    }

    #[tokio::test]
    async fn near_the_end_a_hit_is_served_and_refreshed_in_the_background() {
        let cache: TagCache<Verified> = TagCache::new(
            TagCacheSettings {
                max_entries: 10,
                ttl: Duration::from_secs(3600),
                refresh_ahead: Duration::from_secs(7200),
            },
            |v: &Verified| v.expires,
        );
        let calls = Arc::new(AtomicUsize::new(0));
        let resolver = {
            let calls = calls.clone();
            move || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    Ok::<_, std::io::Error>(verified(
                        &format!("sha256:{n}"),
                        time::Duration::days(1),
                    ))
                }
            }
        };
        let first = cache
            .get_or_refresh(key("hot"), resolver.clone())
            .await
            .unwrap();
        assert_eq!(first.digest, "sha256:0");
        // Every hit is within refresh_ahead of the end: served from cache at once, refreshed behind.
        let second = cache
            .get_or_refresh(key("hot"), resolver.clone())
            .await
            .unwrap();
        assert_eq!(second.digest, "sha256:0");
        for _ in 0..50 {
            if cache.get(&key("hot")).await.map(|v| v.digest) == Some("sha256:1".into()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(cache.get(&key("hot")).await.unwrap().digest, "sha256:1");
    }
}
