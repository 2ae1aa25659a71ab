//! [`TrustClient`]: the one entry point the proxy and the CLI use. It serialises updates per
//! GUN, runs the update workflow against a [`MetadataSource`], persists trusted state, and
//! answers DCT lookups.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use super::errors::TrustError;
use super::limits::Limits;
use super::lookup::{TrustedRepo, VerifiedTarget};
use super::pin::TrustPinning;
use super::source::MetadataSource;
use super::store::StateStore;
use super::update::Update;

/// The roles `docker pull` with DCT accepts, in priority order.
pub const DEFAULT_ROLES: [&str; 2] = ["targets/releases", "targets"];

pub fn default_roles() -> Vec<String> {
    DEFAULT_ROLES.iter().map(|r| (*r).to_owned()).collect()
}

/// How trust is established and bounded.
#[derive(Debug, Clone, Default)]
pub struct TrustSettings {
    pub pinning: TrustPinning,
    pub limits: Limits,
    /// Where trusted state persists; `None` keeps it in memory (trust on first use then
    /// happens once per process: fine for a one-shot CLI, not for the proxy).
    pub state_dir: Option<PathBuf>,
    /// How long a verified repository may answer lookups before the next update. Zero (the
    /// default) fetches the timestamp on every resolve, as the Notary client does. Expiry is
    /// checked at every lookup regardless.
    pub fresh_for: Duration,
}

/// Source of "now"; injectable so tests can move time.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

type Slot = Arc<tokio::sync::Mutex<Option<(OffsetDateTime, Arc<TrustedRepo>)>>>;

pub struct TrustClient {
    settings: TrustSettings,
    source: Arc<dyn MetadataSource>,
    store: StateStore,
    clock: Clock,
    slots: Mutex<HashMap<String, Slot>>,
}

impl std::fmt::Debug for TrustClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustClient")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Checks a GUN before it names files or URLs: `host[:port]/path` made of the characters
/// registries allow, no empty or dot segments.
pub fn validate_gun(gun: &str) -> Result<(), TrustError> {
    let bad = |reason: &str| TrustError::InvalidGun {
        gun: gun.to_owned(),
        reason: reason.to_owned(),
    };
    if gun.is_empty() || gun.len() > 255 {
        return Err(bad("length must be 1..=255"));
    }
    if !gun
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-/:".contains(&b))
    {
        return Err(bad("allowed characters are [A-Za-z0-9._-/:]"));
    }
    if gun
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(bad("empty or dot path segment"));
    }
    Ok(())
}

impl TrustClient {
    pub fn new(
        settings: TrustSettings,
        source: Arc<dyn MetadataSource>,
    ) -> Result<Self, TrustError> {
        let store = match &settings.state_dir {
            Some(dir) => StateStore::dir(dir)?,
            None => StateStore::memory(),
        };
        Ok(TrustClient {
            settings,
            source,
            store,
            clock: Arc::new(OffsetDateTime::now_utc),
            slots: Mutex::new(HashMap::new()),
        })
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn settings(&self) -> &TrustSettings {
        &self.settings
    }

    fn slot(&self, gun: &str) -> Slot {
        let mut slots = match self.slots.lock() {
            Ok(s) => s,
            // A panic elsewhere while holding this map cannot leave it inconsistent.
            Err(poisoned) => poisoned.into_inner(),
        };
        slots.entry(gun.to_owned()).or_default().clone()
    }

    /// Keeps a verified repository for reuse only when reuse is configured: with `fresh_for`
    /// zero, holding every repository's metadata in memory would buy nothing.
    fn keep(
        &self,
        slot: &mut Option<(OffsetDateTime, Arc<TrustedRepo>)>,
        now: OffsetDateTime,
        repo: &Arc<TrustedRepo>,
    ) {
        *slot = if self.settings.fresh_for.is_zero() {
            None
        } else {
            Some((now, repo.clone()))
        };
    }

    /// Runs a full update for `gun` now and returns the verified repository.
    pub async fn update(&self, gun: &str) -> Result<Arc<TrustedRepo>, TrustError> {
        validate_gun(gun)?;
        let slot = self.slot(gun);
        let mut guard = slot.lock().await;
        let now = (self.clock)();
        let repo = Arc::new(self.run_update(gun, now).await?);
        self.keep(&mut guard, now, &repo);
        Ok(repo)
    }

    async fn run_update(&self, gun: &str, now: OffsetDateTime) -> Result<TrustedRepo, TrustError> {
        Update {
            gun,
            source: self.source.as_ref(),
            store: &self.store,
            pinning: &self.settings.pinning,
            limits: &self.settings.limits,
            now,
            downloaded: Default::default(),
            // An absurd configured deadline must not overflow the clock: a day is "no deadline".
            deadline: {
                let start = tokio::time::Instant::now();
                start
                    .checked_add(self.settings.limits.update_deadline)
                    .unwrap_or(start + Duration::from_secs(86_400))
            },
        }
        .run()
        .await
    }

    /// The verified repository, updated unless the last update is younger than `fresh_for`.
    pub async fn repo(&self, gun: &str) -> Result<Arc<TrustedRepo>, TrustError> {
        validate_gun(gun)?;
        let slot = self.slot(gun);
        let mut guard = slot.lock().await;
        let now = (self.clock)();
        if let Some((at, repo)) = guard.as_ref() {
            if now >= *at && now - *at < self.settings.fresh_for {
                return Ok(repo.clone());
            }
        }
        let repo = Arc::new(self.run_update(gun, now).await?);
        self.keep(&mut guard, now, &repo);
        Ok(repo)
    }

    /// The digest `tag` of `gun` is signed for, from the first of `roles` (priority order;
    /// see [`DEFAULT_ROLES`]) that signs it.
    pub async fn resolve(
        &self,
        gun: &str,
        tag: &str,
        roles: &[String],
    ) -> Result<VerifiedTarget, TrustError> {
        let repo = self.repo(gun).await?;
        repo.lookup(tag, roles, (self.clock)())
    }

    /// Every trusted tag of `gun` from `roles`.
    pub async fn list(
        &self,
        gun: &str,
        roles: &[String],
    ) -> Result<Vec<VerifiedTarget>, TrustError> {
        let repo = self.repo(gun).await?;
        repo.list(roles, (self.clock)())
    }

    /// Current time per this client's clock.
    pub fn now(&self) -> OffsetDateTime {
        (self.clock)()
    }
}
