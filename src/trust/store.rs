//! Persisted trusted state per GUN (issue 3, "Persistence"): the trusted root, the highest
//! version ever accepted for every role, and the last verified metadata bytes (for use when
//! the trust server is unreachable). One JSON file per GUN, replaced atomically (temp file,
//! fsync, rename, fsync of the directory), so a crash leaves either the old or the new state
//! and a restart cannot reset versions.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::errors::TrustError;

/// What is trusted for one GUN.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedState {
    pub format: u32,
    pub gun: String,
    /// Highest accepted version per role name (root, timestamp, snapshot, targets, delegations).
    /// Never lowered, even when a role disappears.
    pub versions: BTreeMap<String, u64>,
    /// Last verified bytes per role name, base64 (root always present once trusted).
    pub metadata: BTreeMap<String, String>,
    /// Per role, tags it once signed and a later version dropped (`notary remove` + publish),
    /// so a refusal can say "revoked" rather than "not signed". Bounded per role.
    #[serde(default)]
    pub revoked: BTreeMap<String, BTreeSet<String>>,
    /// Per role, when (unix nanoseconds, verification clock) a key rotation last dropped its
    /// floor (fast-forward recovery, [`floors`](super::floors)). Orders floors across writers
    /// sharing the directory: a floor recorded before a reset never raises one recorded after.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub floor_resets: BTreeMap<String, u64>,
    /// The pinning entries ([`TrustPinning::fingerprint_for`](super::pin::TrustPinning::fingerprint_for))
    /// the trusted root has been checked against; emptied when the root changes. Several, so
    /// two rules that pin one GUN differently do not rewrite the file on every alternation.
    /// Empty in files written before it was recorded: the stored root then faces the pins
    /// once.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub pins_checked: BTreeSet<String>,
}

impl TrustedState {
    pub const FORMAT: u32 = 1;

    pub fn new(gun: &str) -> Self {
        TrustedState {
            format: Self::FORMAT,
            gun: gun.to_owned(),
            ..Default::default()
        }
    }

    pub fn version(&self, role: &str) -> Option<u64> {
        self.versions.get(role).copied()
    }

    pub fn bytes(&self, role: &str) -> Option<Vec<u8>> {
        self.metadata
            .get(role)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
    }

    pub fn set_bytes(&mut self, role: &str, bytes: &[u8]) {
        self.metadata.insert(
            role.to_owned(),
            base64::engine::general_purpose::STANDARD.encode(bytes),
        );
    }

    /// Most entries kept in [`TrustedState::pins_checked`] (the oldest-named go first).
    pub const MAX_PINS_CHECKED: usize = 16;

    /// Most revoked tags remembered per role; the oldest-named are dropped past it.
    pub const MAX_REVOKED_PER_ROLE: usize = 4096;

    /// Records that `role` went from signing `before` to signing `after`.
    pub fn note_revocations<'a>(
        &mut self,
        role: &str,
        before: &[String],
        after: impl Iterator<Item = &'a String> + Clone,
    ) {
        let set = self.revoked.entry(role.to_owned()).or_default();
        for tag in before {
            if !after.clone().any(|t| t == tag) {
                set.insert(tag.clone());
            }
        }
        for tag in after {
            set.remove(tag);
        }
        while set.len() > Self::MAX_REVOKED_PER_ROLE {
            set.pop_first();
        }
        if set.is_empty() {
            self.revoked.remove(role);
        }
    }

    /// Drops a role's stored copy and version floor because its keys were replaced (the only
    /// way a floor is ever lowered; see [`floors`](super::floors)).
    pub fn reset_floor(&mut self, role: &str, at: time::OffsetDateTime) {
        self.versions.remove(role);
        self.metadata.remove(role);
        let at = u64::try_from(at.unix_timestamp_nanos()).unwrap_or(0);
        let epoch = self.reset_epoch(role).max(at);
        self.floor_resets.insert(role.to_owned(), epoch);
    }

    fn reset_epoch(&self, role: &str) -> u64 {
        self.floor_resets.get(role).copied().unwrap_or(0)
    }

    /// Raises (never lowers) a role's recorded version.
    pub fn raise_version(&mut self, role: &str, version: u64) {
        let v = self.versions.entry(role.to_owned()).or_insert(version);
        *v = (*v).max(version);
    }
}

/// Where trusted state lives.
#[derive(Debug)]
pub enum StateStore {
    /// A directory; one `<sha256(gun)>.json` file per GUN (hashing keeps any GUN a safe name).
    /// `legacy` directories are read, never written, for a GUN the directory has no file for
    /// yet: where earlier versions kept the same server's state (keyed by its pinning too).
    Dir { path: PathBuf, legacy: Vec<PathBuf> },
    /// In memory only: trust lasts as long as the process (tests, one-shot CLI).
    Memory(Mutex<BTreeMap<String, TrustedState>>),
}

impl StateStore {
    pub fn dir(path: impl Into<PathBuf>) -> Result<Self, TrustError> {
        let path = path.into();
        std::fs::create_dir_all(&path).map_err(|e| TrustError::Store {
            gun: String::new(),
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(StateStore::Dir {
            path,
            legacy: Vec::new(),
        })
    }

    /// As [`StateStore::dir`], falling back to reading `legacy` directories (see the variant).
    pub fn dir_with_legacy(
        path: impl Into<PathBuf>,
        legacy: Vec<PathBuf>,
    ) -> Result<Self, TrustError> {
        match Self::dir(path)? {
            StateStore::Dir { path, .. } => Ok(StateStore::Dir { path, legacy }),
            memory => Ok(memory),
        }
    }

    pub fn memory() -> Self {
        StateStore::Memory(Mutex::new(BTreeMap::new()))
    }

    fn file_for(dir: &Path, gun: &str) -> PathBuf {
        dir.join(format!(
            "{}.json",
            hex::encode(Sha256::digest(gun.as_bytes()))
        ))
    }

    pub fn load(&self, gun: &str) -> Result<Option<TrustedState>, TrustError> {
        match self {
            StateStore::Memory(m) => Ok(m.lock().map_err(|_| poisoned(gun))?.get(gun).cloned()),
            StateStore::Dir { path: dir, legacy } => {
                for dir in std::iter::once(dir).chain(legacy) {
                    if let Some(state) = Self::load_file(dir, gun)? {
                        return Ok(Some(state));
                    }
                }
                Ok(None)
            }
        }
    }

    fn load_file(dir: &Path, gun: &str) -> Result<Option<TrustedState>, TrustError> {
        let path = Self::file_for(dir, gun);
        let err = |reason: String| TrustError::Store {
            gun: gun.to_owned(),
            path: path.display().to_string(),
            reason,
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(e.to_string())),
        };
        // A corrupt state file is an error, never "no state": treating it as absent
        // would silently reset pins and versions.
        let state: TrustedState = serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
        if state.format != TrustedState::FORMAT || state.gun != gun {
            return Err(err("state file does not belong to this GUN/format".into()));
        }
        Ok(Some(state))
    }

    pub fn save(&self, state: &TrustedState) -> Result<(), TrustError> {
        let gun = &state.gun;
        match self {
            StateStore::Memory(m) => {
                m.lock()
                    .map_err(|_| poisoned(gun))?
                    .insert(gun.clone(), state.clone());
                Ok(())
            }
            StateStore::Dir { path: dir, legacy } => {
                let path = Self::file_for(dir, gun);
                let err = |reason: String| TrustError::Store {
                    gun: gun.clone(),
                    path: path.display().to_string(),
                    reason,
                };
                // Another process sharing the directory may have recorded higher versions
                // meanwhile: never write them back down. A floor recorded before a reset we
                // made (fast-forward recovery) is stale and must not come back; one recorded
                // after a later reset by the other writer wins.
                let mut state = state.clone();
                if let Ok(Some(current)) = self.load(gun) {
                    for (role, v) in &current.versions {
                        let (ours, theirs) = (state.reset_epoch(role), current.reset_epoch(role));
                        if theirs > ours {
                            state.versions.insert(role.clone(), *v);
                            state.floor_resets.insert(role.clone(), theirs);
                        } else if theirs == ours {
                            state.raise_version(role, *v);
                        }
                    }
                }
                let state = &state;
                let bytes = serde_json::to_vec_pretty(state).map_err(|e| err(e.to_string()))?;
                let mut tmp = tempfile_in(dir).map_err(|e| err(e.to_string()))?;
                tmp.1.write_all(&bytes).map_err(|e| err(e.to_string()))?;
                tmp.1.sync_all().map_err(|e| err(e.to_string()))?;
                std::fs::rename(&tmp.0, &path).map_err(|e| err(e.to_string()))?;
                tmp.0 = PathBuf::new();
                // Make the rename itself durable.
                if let Ok(d) = std::fs::File::open(dir) {
                    let _ = d.sync_all();
                }
                // The GUN's legacy copies are never read again now that the directory has its
                // file (`load` reads them only for a GUN it has none for), and what they held
                // was merged in above: delete them, and a legacy directory they leave empty,
                // so the old layout does not linger (PROXY-REVIEW D20).
                for old in legacy {
                    if std::fs::remove_file(Self::file_for(old, gun)).is_ok() {
                        let _ = std::fs::remove_dir(old);
                    }
                }
                Ok(())
            }
        }
    }
}

fn poisoned(gun: &str) -> TrustError {
    TrustError::Store {
        gun: gun.to_owned(),
        path: "<memory>".into(),
        reason: "lock poisoned".into(),
    }
}

/// A uniquely named temp file in `dir`, removed on drop unless renamed (path cleared).
struct TempFile(PathBuf, std::fs::File);

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn tempfile_in(dir: &Path) -> std::io::Result<TempFile> {
    for _ in 0..16 {
        let name = format!(".state-{}.tmp", hex::encode(rand::random::<[u8; 8]>()));
        let path = dir.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => return Ok(TempFile(path, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "no free temp file name",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_atomic_and_never_lowers_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::dir(dir.path()).unwrap();
        assert_eq!(store.load("example.com/app").unwrap(), None);

        let mut s = TrustedState::new("example.com/app");
        s.raise_version("timestamp", 5);
        s.set_bytes("root", b"{root}");
        store.save(&s).unwrap();
        assert_eq!(store.load("example.com/app").unwrap().as_ref(), Some(&s));

        // A writer holding older state cannot lower what is recorded.
        let mut older = TrustedState::new("example.com/app");
        older.raise_version("timestamp", 3);
        store.save(&older).unwrap();
        let got = store.load("example.com/app").unwrap().unwrap();
        assert_eq!(got.version("timestamp"), Some(5));

        // Only the state file remains: temp files were renamed away.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // GUNs map to distinct hashed files and a file never serves another GUN.
        assert_eq!(store.load("example.com/other").unwrap(), None);
        let path = StateStore::file_for(dir.path(), "example.com/app");
        std::fs::copy(&path, StateStore::file_for(dir.path(), "example.com/other")).unwrap();
        assert!(matches!(
            store.load("example.com/other"),
            Err(TrustError::Store { .. })
        ));
    }

    /// A GUN's state moves out of the legacy layout at its first save, floors included, and
    /// the legacy copy (never read again) is deleted; the legacy directory goes with its
    /// last GUN (PROXY-REVIEW D20).
    #[test]
    fn the_first_save_moves_a_gun_out_of_the_legacy_directory() {
        let t = tempfile::tempdir().unwrap();
        let (new_dir, old_dir) = (t.path().join("server"), t.path().join("legacy"));
        let old = StateStore::dir(&old_dir).unwrap();
        for gun in ["example.com/a", "example.com/b"] {
            let mut s = TrustedState::new(gun);
            s.raise_version("timestamp", 7);
            old.save(&s).unwrap();
        }
        let store = StateStore::dir_with_legacy(&new_dir, vec![old_dir.clone()]).unwrap();
        let a = store.load("example.com/a").unwrap().unwrap();
        assert_eq!(
            a.version("timestamp"),
            Some(7),
            "read from the legacy directory"
        );

        // A writer that knows less still cannot lower the legacy floor.
        store.save(&TrustedState::new("example.com/a")).unwrap();
        let a = store.load("example.com/a").unwrap().unwrap();
        assert_eq!(a.version("timestamp"), Some(7));
        assert!(StateStore::file_for(&new_dir, "example.com/a").exists());
        assert!(!StateStore::file_for(&old_dir, "example.com/a").exists());
        assert!(old_dir.exists(), "b still lives there");

        store
            .save(&store.load("example.com/b").unwrap().unwrap())
            .unwrap();
        assert!(!old_dir.exists(), "emptied legacy directory removed");
        assert_eq!(
            store
                .load("example.com/b")
                .unwrap()
                .unwrap()
                .version("timestamp"),
            Some(7)
        );
    }

    #[test]
    fn a_reset_floor_is_not_raised_again_by_a_stale_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::dir(dir.path()).unwrap();
        let gun = "example.com/app";
        let mut before = TrustedState::new(gun);
        before.raise_version("timestamp", 1000);
        before.raise_version("snapshot", 7);
        store.save(&before).unwrap();

        // Fast-forward recovery: the timestamp floor is dropped, then the new file accepted.
        let mut after = before.clone();
        after.reset_floor("timestamp", time::OffsetDateTime::now_utc());
        after.raise_version("timestamp", 2);
        store.save(&after).unwrap();
        let got = store.load(gun).unwrap().unwrap();
        assert_eq!(got.version("timestamp"), Some(2));
        assert_eq!(got.version("snapshot"), Some(7));

        // A writer that never saw the reset cannot bring 1000 back; other floors still merge.
        let mut stale = before.clone();
        stale.raise_version("snapshot", 8);
        store.save(&stale).unwrap();
        let got = store.load(gun).unwrap().unwrap();
        assert_eq!(got.version("timestamp"), Some(2));
        assert_eq!(got.version("snapshot"), Some(8));
        // And a later writer (same epoch) still only raises.
        let mut lower = got.clone();
        lower.versions.insert("timestamp".into(), 1);
        store.save(&lower).unwrap();
        assert_eq!(
            store.load(gun).unwrap().unwrap().version("timestamp"),
            Some(2)
        );
    }

    #[test]
    fn revocations_are_tracked_and_cleared() {
        let mut s = TrustedState::new("g");
        let before = vec!["a".to_string(), "b".to_string()];
        let after = vec!["b".to_string()];
        s.note_revocations("targets", &before, after.iter());
        assert!(s.revoked["targets"].contains("a"));
        let again = ["a".to_string(), "b".to_string()];
        s.note_revocations("targets", &after, again.iter());
        assert!(!s.revoked.contains_key("targets"));
    }
}
