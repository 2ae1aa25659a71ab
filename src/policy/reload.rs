//! Live policy: an atomically swapped `Arc<Policy>`, reloaded on SIGHUP and when the file's
//! content changes. A new file that fails validation is logged and refused; the policy in
//! force stays until a valid file replaces it.
//!
//! `std::sync::RwLock<Arc<Policy>>` rather than `arc-swap`: readers hold the lock only to
//! clone the `Arc` (once per request), so contention is negligible and no dependency is needed.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::error::{PolicyError, PolicyErrorKind, PolicyErrors};
use super::Policy;

/// How often the watcher compares the file's content with the policy in force.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// The result of one reload attempt.
#[derive(Debug, Clone)]
pub enum ReloadOutcome {
    /// The new policy is in force.
    Replaced { generation: u64 },
    /// The file was invalid (or unreadable); the previous policy is still in force.
    Rejected(PolicyErrors),
    /// The handle has no file (embedded default); nothing to reload.
    NoFile,
}

/// What the watcher last saw in the file, so each change is acted on (and logged) once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Content([u8; 32]),
    Unreadable,
}

/// The policy in force, shared by every request.
#[derive(Debug)]
pub struct PolicyHandle {
    path: Option<PathBuf>,
    current: RwLock<Arc<Policy>>,
    generation: AtomicU64,
    seen: Mutex<Option<Seen>>,
    /// Serialises reloads so that two racing loads cannot install an older file last.
    reloading: Mutex<()>,
    /// Where reload outcomes are counted (`trustgate_policy_reloads_total`), once the proxy
    /// that uses this handle has its metrics.
    metrics: std::sync::OnceLock<ReloadMetrics>,
}

struct ReloadMetrics(Arc<crate::metrics::Metrics>);

impl std::fmt::Debug for ReloadMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl PolicyHandle {
    /// Loads `path`; the first load must succeed (there is no previous policy to keep).
    pub fn load(path: impl Into<PathBuf>) -> Result<PolicyHandle, PolicyErrors> {
        let path = path.into();
        let (policy, seen) = read_and_load(&path);
        let policy = policy?;
        Ok(PolicyHandle {
            path: Some(path),
            current: RwLock::new(Arc::new(policy)),
            generation: AtomicU64::new(1),
            seen: Mutex::new(Some(seen)),
            reloading: Mutex::new(()),
            metrics: std::sync::OnceLock::new(),
        })
    }

    /// A handle on a policy with no file behind it (e.g. `Policy::embedded_default()`).
    pub fn fixed(policy: Policy) -> PolicyHandle {
        PolicyHandle {
            path: None,
            current: RwLock::new(Arc::new(policy)),
            generation: AtomicU64::new(1),
            seen: Mutex::new(None),
            reloading: Mutex::new(()),
            metrics: std::sync::OnceLock::new(),
        }
    }

    /// Counts every later reload attempt in `metrics` (the first caller wins).
    pub fn count_reloads_in(&self, metrics: Arc<crate::metrics::Metrics>) {
        let _ = self.metrics.set(ReloadMetrics(metrics));
    }

    /// The policy in force. Cheap: one `Arc` clone.
    pub fn current(&self) -> Arc<Policy> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Starts at 1; increases by one with every successful reload.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Loads the file now. On success the new policy replaces the old atomically; on failure
    /// the errors are logged and the old policy stays.
    pub fn reload(&self) -> ReloadOutcome {
        let Some(path) = &self.path else {
            return ReloadOutcome::NoFile;
        };
        let _turn = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let (result, seen) = read_and_load(path);
        self.set_seen(seen);
        self.install(path, result)
    }

    fn install(&self, path: &Path, result: Result<Policy, PolicyErrors>) -> ReloadOutcome {
        if let Some(m) = self.metrics.get() {
            m.0.record_policy_reload(result.is_ok());
        }
        match result {
            Ok(policy) => {
                let mut slot = self
                    .current
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                *slot = Arc::new(policy);
                let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
                drop(slot);
                tracing::info!(path = %path.display(), generation, "policy reloaded");
                ReloadOutcome::Replaced { generation }
            }
            Err(errors) => {
                tracing::error!(
                    path = %path.display(),
                    errors = %errors,
                    "policy reload refused; the previous policy stays in force"
                );
                ReloadOutcome::Rejected(errors)
            }
        }
    }

    fn set_seen(&self, seen: Seen) {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(seen);
    }

    /// Reloads if the file's content differs from what was last seen.
    fn poll(&self) -> Option<ReloadOutcome> {
        let path = self.path.as_ref()?;
        let now = fingerprint(std::fs::read(path).ok().as_deref());
        let previous = *self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if previous == Some(now) {
            return None;
        }
        Some(self.reload())
    }

    /// Starts the background watcher: reload on SIGHUP, and poll the file every `interval`
    /// for content changes. Stops when `shutdown` completes. Must be called inside a tokio
    /// runtime; the SIGHUP handler is installed before this returns, so a SIGHUP sent
    /// afterwards can no longer terminate the process.
    pub fn spawn_watcher(
        self: &Arc<Self>,
        interval: Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<tokio::task::JoinHandle<()>> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup())?;
        let handle = Arc::clone(self);
        Ok(tokio::spawn(async move {
            tokio::pin!(shutdown);
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let from_signal = tokio::select! {
                    _ = &mut shutdown => break,
                    s = hup.recv() => {
                        if s.is_none() {
                            break;
                        }
                        true
                    }
                    _ = ticker.tick() => false,
                };
                let h = Arc::clone(&handle);
                // File reads and PEM parsing are blocking work.
                let job = tokio::task::spawn_blocking(move || {
                    if from_signal {
                        tracing::info!("SIGHUP: reloading the policy");
                        Some(h.reload())
                    } else {
                        h.poll()
                    }
                });
                if let Err(e) = job.await {
                    tracing::error!(error = %e, "policy reload task failed");
                }
            }
        }))
    }
}

fn fingerprint(bytes: Option<&[u8]>) -> Seen {
    match bytes {
        Some(b) => Seen::Content(Sha256::digest(b).into()),
        None => Seen::Unreadable,
    }
}

/// Reads once, so that the fingerprint describes exactly the bytes that were validated.
fn read_and_load(path: &Path) -> (Result<Policy, PolicyErrors>, Seen) {
    let origin = path.display().to_string();
    match std::fs::read(path) {
        Err(e) => (
            Err(PolicyErrors {
                errors: vec![PolicyError {
                    origin,
                    line: None,
                    field: String::new(),
                    kind: PolicyErrorKind::Read {
                        reason: e.to_string(),
                    },
                }],
            }),
            Seen::Unreadable,
        ),
        Ok(bytes) => {
            let seen = fingerprint(Some(&bytes));
            let result = match String::from_utf8(bytes) {
                Ok(text) => {
                    let base = path.parent().unwrap_or(Path::new("."));
                    super::load::load(&text, &origin, base)
                }
                Err(_) => Err(PolicyErrors {
                    errors: vec![PolicyError {
                        origin,
                        line: None,
                        field: String::new(),
                        kind: PolicyErrorKind::Read {
                            reason: "not valid UTF-8".into(),
                        },
                    }],
                }),
            };
            (result, seen)
        }
    }
}
