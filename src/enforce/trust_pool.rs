//! The [`TrustClient`]s the policy's signed rules need, built on first use.
//!
//! Trusted state (pinned roots, version floors, held metadata) lives in one directory per
//! trust *server*, named after what identifies it — scheme, host (lowercase), port (default
//! made explicit) and path (trailing slashes dropped) — with one file per GUN inside. Neither
//! the rule's pinning nor the URL's spelling nor a timeout names it, so editing pins, writing
//! `https://Notary.Example:443/` for `https://notary.example`, or changing credentials never
//! resets trust on first use or rollback protection (PROXY-REVIEW D8). The pinning is a
//! verification-time input instead: each state file records which pin entry its root was
//! checked against, and a changed entry makes the stored root face the new pins
//! (`trust::update`, `still_pinned`).
//!
//! Clients, on the other hand, depend on everything: server, pinning, credentials, CA file,
//! deadline. They are rebuilt when a policy reload replaces the policy ([`TrustPool::sync`]),
//! so a rotated Notary password or a re-issued CA file takes effect at the reload, and the
//! clients of a previous policy are dropped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};

use crate::policy::{NotaryVerifier, TrustPinning as PolicyPinning};
use crate::trust::fetch::{settings_for, HttpMetadataSource};
use crate::trust::{CertPin, TrustClient, TrustPinning, TrustSettings, DEFAULT_NEGATIVE_TTL};

/// Default for [`TrustPool::with_max_updates`] (`limits.max_trust_updates`).
pub const DEFAULT_MAX_TRUST_UPDATES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("trust server {server}: {reason}")]
    Settings { server: String, reason: String },
    /// The client's state directory could not be opened (a local fault).
    #[error(transparent)]
    State(crate::trust::TrustError),
}

struct Clients {
    /// The policy generation the clients were built for.
    generation: u64,
    by_key: HashMap<String, Arc<TrustClient>>,
}

pub struct TrustPool {
    state_dir: PathBuf,
    /// State directory name → the policy's name for that trust server (for metric labels:
    /// bounded by the policy, never by GUNs).
    servers: Mutex<std::collections::BTreeMap<String, String>>,
    /// The last [`TrustPool::expiry`] answer and when it was computed.
    expiry_cache: Mutex<Option<(std::time::Instant, TrustExpiry)>>,
    clients: Mutex<Clients>,
    /// One cap on trust updates in flight across every trust server.
    permits: Arc<tokio::sync::Semaphore>,
}

impl TrustPool {
    pub fn new(state_dir: PathBuf) -> TrustPool {
        TrustPool {
            state_dir,
            servers: Mutex::default(),
            expiry_cache: Mutex::default(),
            clients: Mutex::new(Clients {
                generation: 0,
                by_key: HashMap::new(),
            }),
            permits: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_TRUST_UPDATES)),
        }
    }

    /// At most `n` (≥ 1) trust updates run at once; others wait, within their deadline.
    pub fn with_max_updates(mut self, n: usize) -> TrustPool {
        self.permits = Arc::new(tokio::sync::Semaphore::new(n.max(1)));
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Clients> {
        match self.clients.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Drops every client when the policy generation changed since they were built, so the
    /// next request builds them from the reloaded policy (credentials, CA file contents).
    /// Trusted state is on disk and unaffected.
    pub fn sync(&self, generation: u64) {
        let mut clients = self.lock();
        if clients.generation != generation {
            clients.generation = generation;
            clients.by_key.clear();
        }
    }

    /// Where the state of `server` lives: `<state_dir>/trust/<server_key>`.
    pub fn state_dir_for(&self, server: &url::Url) -> PathBuf {
        self.state_dir.join("trust").join(server_key(server))
    }

    /// The state directories of every trust server seen so far (`<state_dir>/trust/*`).
    pub fn trust_root(&self) -> PathBuf {
        self.state_dir.join("trust")
    }

    /// The client for `req`'s trust server and pinning, and a key naming everything it
    /// depends on (pinning, credentials, CA file, deadline) for caches of its results.
    pub fn client(&self, req: &NotaryVerifier) -> Result<(String, Arc<TrustClient>), PoolError> {
        self.client_and_key(req).map(|(c, k)| (k, c))
    }

    /// [`TrustPool::client`], client first.
    pub fn client_and_key(
        &self,
        req: &NotaryVerifier,
    ) -> Result<(Arc<TrustClient>, String), PoolError> {
        let server = req.trust_server();
        let pinning = convert_pinning(req.pinning());
        let client_key = client_key(req, &pinning);
        let mut clients = self.lock();
        if let Some(c) = clients.by_key.get(&client_key) {
            return Ok((c.clone(), client_key));
        }
        let bad = |reason: String| PoolError::Settings {
            server: server.url().to_string(),
            reason,
        };
        let mut settings = settings_for(server.url().as_str(), server.ca_file().cloned())
            .map_err(|e| bad(e.to_string()))?;
        settings.credentials = server.credentials().cloned();
        let source = HttpMetadataSource::from_settings(settings).map_err(|e| bad(e.to_string()))?;
        let trust = TrustSettings {
            // Read where versions before the per-server layout kept this server's state for
            // this very pinning, so upgrading does not reset trust either.
            legacy_state_dirs: vec![self
                .state_dir
                .join("trust")
                .join(legacy_key(server.url().as_str(), &pinning))],
            pinning,
            state_dir: Some(self.state_dir_for(server.url())),
            limits: crate::trust::Limits {
                update_deadline: server.trust_timeout(),
                ..Default::default()
            },
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            update_permits: Some(self.permits.clone()),
            ..TrustSettings::default()
        };
        let client = Arc::new(
            TrustClient::new(trust, Arc::new(source)).map_err(|e| match e {
                e @ crate::trust::TrustError::Store { .. } => PoolError::State(e),
                e => bad(e.to_string()),
            })?,
        );
        if let Ok(mut servers) = self.servers.lock() {
            servers.insert(server_key(server.url()), server.name().to_owned());
        }
        clients.by_key.insert(client_key.clone(), client.clone());
        Ok((client, client_key))
    }
}

/// Seconds until held trust data stops verifying (expiry early warning): the minimum over
/// every GUN held, and per trust server the policy names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustExpiry {
    /// `None` when no trust data with an expiry is held.
    pub earliest: Option<i64>,
    /// (trust server name, seconds) for servers this process has used.
    pub per_server: Vec<(String, i64)>,
}

/// How long [`TrustPool::expiry`] reuses its scan of the state directory.
const EXPIRY_SCAN_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl TrustPool {
    /// The expiry early warning ([`crate::trust::expiry`]) over `<state_dir>/trust`, rescanned
    /// at most once a minute (a scrape every few seconds must not parse every state file).
    /// Unreadable state counts as expired now (0): it cannot verify either.
    pub fn expiry(&self) -> TrustExpiry {
        let mut cache = match self.expiry_cache.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((at, e)) = cache.as_ref() {
            if at.elapsed() < EXPIRY_SCAN_EVERY {
                return e.clone();
            }
        }
        let e = self.scan_expiry(time::OffsetDateTime::now_utc());
        *cache = Some((std::time::Instant::now(), e.clone()));
        e
    }

    fn scan_expiry(&self, now: time::OffsetDateTime) -> TrustExpiry {
        let servers = match self.servers.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let mut out = TrustExpiry::default();
        let Ok(dirs) = std::fs::read_dir(self.trust_root()) else {
            return out;
        };
        for dir in dirs.flatten() {
            let key = dir.file_name().to_string_lossy().into_owned();
            let least = match crate::trust::expiry::held(&dir.path()) {
                Ok(held) => held.iter().filter_map(|g| g.seconds_left(now)).min(),
                Err(reason) => {
                    tracing::warn!(%reason, "trust state unreadable for the expiry warning");
                    Some(0)
                }
            };
            let Some(least) = least else { continue };
            out.earliest = Some(out.earliest.map_or(least, |e| e.min(least)));
            if let Some(name) = servers.get(&key) {
                out.per_server.push((name.clone(), least));
            }
        }
        out.per_server.sort();
        out
    }
}

/// What identifies a trust server, however its URL is spelled: scheme, lowercase host,
/// explicit port, path without trailing slashes (`url::Url` already lowercases the host and
/// drops a default port; both are made explicit here so the key never depends on them).
pub fn server_identity(url: &url::Url) -> String {
    format!(
        "{}://{}:{}{}",
        url.scheme(),
        url.host_str().unwrap_or_default().to_ascii_lowercase(),
        url.port_or_known_default().unwrap_or(0),
        url.path().trim_end_matches('/')
    )
}

/// The state directory name of a trust server: a hash of [`server_identity`].
pub fn server_key(url: &url::Url) -> String {
    hex::encode(&Sha256::digest(server_identity(url).as_bytes())[..12])
}

/// Everything a client depends on. Credentials enter as a hash (never stored in clear).
fn client_key(req: &NotaryVerifier, pinning: &TrustPinning) -> String {
    let server = req.trust_server();
    let mut h = Sha256::new();
    h.update(server.url().as_str().as_bytes());
    h.update([0]);
    h.update(format!("{pinning:?}").as_bytes());
    h.update([0]);
    if let Some(c) = server.credentials() {
        h.update(c.username.as_bytes());
        h.update([0]);
        h.update(c.password.as_bytes());
    }
    h.update([0]);
    h.update(format!("{:?}/{:?}", server.ca_file(), server.trust_timeout()).as_bytes());
    hex::encode(h.finalize())
}

/// The policy's pins in the trust module's terms. The policy's `ca` applies to every GUN the
/// rule covers, which is Notary's CA pin for the empty prefix.
fn convert_pinning(p: &PolicyPinning) -> TrustPinning {
    let mut out = TrustPinning {
        disable_tofu: !p.tofu(),
        ..TrustPinning::default()
    };
    for (gun, certs) in p.root_certs() {
        out.certs.insert(
            gun.clone(),
            certs
                .iter()
                .map(|c| CertPin::CertDer(c.der().to_vec()))
                .collect(),
        );
    }
    if let Some(ca) = p.ca() {
        out.ca
            .insert(String::new(), ca.iter().map(|c| c.der().to_vec()).collect());
    }
    out
}

/// The directory name earlier versions used: server URL as written *and* pinning. Only read.
fn legacy_key(server: &str, pinning: &TrustPinning) -> String {
    let mut h = Sha256::new();
    h.update(server.as_bytes());
    h.update([0]);
    h.update(format!("{pinning:?}").as_bytes());
    hex::encode(&h.finalize()[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_directory_ignores_how_the_url_is_spelled() {
        let key = |u: &str| server_key(&url::Url::parse(u).unwrap());
        let base = key("https://notary.example");
        for same in [
            "https://notary.example/",
            "https://Notary.Example:443",
            "HTTPS://NOTARY.EXAMPLE:443/",
        ] {
            assert_eq!(key(same), base, "{same}");
        }
        assert_eq!(key("https://n.example/x/"), key("https://n.example/x"));
        for other in [
            "http://notary.example",
            "https://notary.example:4443",
            "https://other.example",
            "https://notary.example/sub",
        ] {
            assert_ne!(key(other), base, "{other}");
        }
    }
}
