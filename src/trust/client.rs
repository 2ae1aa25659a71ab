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
    /// How long a failed update that found no trust data or could not reach the server is
    /// remembered per GUN and answered without asking again (negative caching). Zero (the
    /// default here; the proxy sets [`DEFAULT_NEGATIVE_TTL`]) asks every time. Bounds what a
    /// client looping over made-up repository names costs the trust server.
    pub negative_ttl: Duration,
    /// Shared cap on trust updates running at once (the proxy shares one across every trust
    /// server); an update that gets no permit within its deadline fails as unreachable.
    pub update_permits: Option<Arc<tokio::sync::Semaphore>>,
    /// Read-only state directories consulted for a GUN with no state in `state_dir` yet
    /// (state kept by earlier versions; see [`StateStore::dir_with_legacy`]).
    pub legacy_state_dirs: Vec<PathBuf>,
}

/// What the proxy uses for [`TrustSettings::negative_ttl`].
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(5);

/// Most GUNs whose update state one client keeps; past it, idle entries are pruned.
pub const MAX_SLOTS: usize = 10_000;

/// Source of "now"; injectable so tests can move time.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// What one GUN's slot holds between updates.
#[derive(Default)]
enum Held {
    #[default]
    Nothing,
    /// Verified at (verification clock); reused within `fresh_for`.
    Verified(OffsetDateTime, Arc<TrustedRepo>),
    /// A failed update, remembered within `negative_ttl` (real time).
    Failed(std::time::Instant, TrustError),
}

type Slot = Arc<tokio::sync::Mutex<Held>>;

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
            Some(dir) => StateStore::dir_with_legacy(dir, settings.legacy_state_dirs.clone())?,
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
        if !slots.contains_key(gun) && slots.len() >= MAX_SLOTS {
            self.prune(&mut slots);
        }
        slots.entry(gun.to_owned()).or_default().clone()
    }

    /// Drops slots nobody waits on whose content can no longer answer; if that is not
    /// enough, every slot nobody waits on (what they held only saved work). What remains is
    /// bounded by the updates in flight.
    fn prune(&self, slots: &mut HashMap<String, Slot>) {
        let now = (self.clock)();
        slots.retain(|_, slot| {
            Arc::strong_count(slot) > 1
                || slot
                    .try_lock()
                    .map_or(true, |held| self.answers(&held, now).is_some())
        });
        if slots.len() >= MAX_SLOTS / 2 {
            slots.retain(|_, slot| Arc::strong_count(slot) > 1 || slot.try_lock().is_err());
        }
    }

    /// What a slot's content answers now without an update, if anything.
    fn answers(
        &self,
        held: &Held,
        now: OffsetDateTime,
    ) -> Option<Result<Arc<TrustedRepo>, TrustError>> {
        match held {
            Held::Nothing => None,
            Held::Verified(at, repo) => {
                (now >= *at && now - *at < self.settings.fresh_for).then(|| Ok(repo.clone()))
            }
            Held::Failed(at, e) => {
                (at.elapsed() < self.settings.negative_ttl).then(|| Err(e.clone()))
            }
        }
    }

    /// Records an update's outcome: a verified repository only when reuse is configured
    /// (with `fresh_for` zero, holding every repository's metadata in memory would buy
    /// nothing), a failure only when negative caching is configured and the failure is one a
    /// stranger can cause cheaply (no trust data, server unreachable or throttling).
    fn keep(
        &self,
        held: &mut Held,
        now: OffsetDateTime,
        result: &Result<Arc<TrustedRepo>, TrustError>,
    ) {
        *held = match result {
            Ok(repo) if !self.settings.fresh_for.is_zero() => Held::Verified(now, repo.clone()),
            Err(e @ (TrustError::NoTrustData { .. } | TrustError::Unreachable { .. }))
                if !self.settings.negative_ttl.is_zero() =>
            {
                Held::Failed(std::time::Instant::now(), e.clone())
            }
            _ => Held::Nothing,
        };
    }

    /// Runs a full update for `gun` now and returns the verified repository.
    pub async fn update(&self, gun: &str) -> Result<Arc<TrustedRepo>, TrustError> {
        validate_gun(gun)?;
        let slot = self.slot(gun);
        let mut guard = slot.lock().await;
        let now = (self.clock)();
        let result = self.run_update(gun, now).await.map(Arc::new);
        self.keep(&mut guard, now, &result);
        result
    }

    async fn run_update(&self, gun: &str, now: OffsetDateTime) -> Result<TrustedRepo, TrustError> {
        // An absurd configured deadline must not overflow the clock: a day is "no deadline".
        let deadline = {
            let start = tokio::time::Instant::now();
            start
                .checked_add(self.settings.limits.update_deadline)
                .unwrap_or(start + Duration::from_secs(86_400))
        };
        // The wait for a permit counts against the update's deadline.
        let _permit = match &self.settings.update_permits {
            Some(permits) => Some(
                tokio::time::timeout_at(deadline, permits.clone().acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .ok_or_else(|| TrustError::Unreachable {
                        file: "-".into(),
                        reason: format!(
                            "too many trust updates in flight (max_trust_updates): none finished within {:?} (trust_timeout)",
                            self.settings.limits.update_deadline
                        ),
                    })?,
            ),
            None => None,
        };
        Update {
            gun,
            source: self.source.as_ref(),
            store: &self.store,
            pinning: &self.settings.pinning,
            limits: &self.settings.limits,
            now,
            downloaded: Default::default(),
            deadline,
        }
        .run()
        .await
    }

    /// The verified repository, updated unless the last update is younger than `fresh_for`
    /// (or failed less than `negative_ttl` ago: then that failure again).
    pub async fn repo(&self, gun: &str) -> Result<Arc<TrustedRepo>, TrustError> {
        validate_gun(gun)?;
        let slot = self.slot(gun);
        let mut guard = slot.lock().await;
        let now = (self.clock)();
        if let Some(answer) = self.answers(&guard, now) {
            return answer;
        }
        let result = self.run_update(gun, now).await.map(Arc::new);
        self.keep(&mut guard, now, &result);
        result
    }

    /// How many GUNs this client holds update state for (bounded by [`MAX_SLOTS`] plus the
    /// updates in flight).
    pub fn slot_count(&self) -> usize {
        match self.slots.lock() {
            Ok(s) => s.len(),
            Err(poisoned) => poisoned.into_inner().len(),
        }
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
