//! The update workflow (`client/tufclient.go`): root → timestamp → snapshot → targets →
//! delegations, each step verified by the pure loaders in [`roles`] against
//! what is already trusted, then persisted. Fetching is the only I/O and goes through
//! [`MetadataSource`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use time::OffsetDateTime;

use super::delegation;
use super::errors::TrustError;
use super::floors;
use super::limits::Limits;
use super::lookup::TrustedRepo;
use super::pin::TrustPinning;
use super::roles::{
    self, LoadedRoot, LoadedSnapshot, LoadedTargets, ROOT, SNAPSHOT, TARGETS, TIMESTAMP,
};
use super::source::{FetchError, MetadataSource};
use super::store::{StateStore, TrustedState};
use super::wire::{self, FileMeta};

pub(crate) struct Update<'a> {
    pub gun: &'a str,
    pub source: &'a dyn MetadataSource,
    pub store: &'a StateStore,
    pub pinning: &'a TrustPinning,
    pub limits: &'a Limits,
    pub now: OffsetDateTime,
    /// Bytes downloaded so far by this update (bounded by `limits.max_update_bytes`).
    pub downloaded: AtomicU64,
    /// When this update must be done (`limits.update_deadline` after it started; real time,
    /// not `now`, which is the verification clock).
    pub deadline: tokio::time::Instant,
}

fn fetch_error(role: &str, e: FetchError) -> TrustError {
    match e {
        FetchError::NotFound { file } => TrustError::Unreachable {
            file,
            reason: "listed by its parent but not found".into(),
        },
        FetchError::Unreachable { file, reason } => TrustError::Unreachable { file, reason },
        FetchError::TooLarge { limit, .. } => TrustError::TooLarge {
            role: role.to_owned(),
            limit,
        },
        FetchError::Refused { file, reason } => TrustError::Refused { file, reason },
    }
}

/// "Server unreachable" in Notary's sense for falling back to cached data: network error,
/// 404 or 5xx (`tufclient.go`, `downloadTimestamp`).
fn is_offline(e: &FetchError) -> bool {
    matches!(
        e,
        FetchError::NotFound { .. } | FetchError::Unreachable { .. }
    )
}

impl Update<'_> {
    async fn fetch(&self, role: &str, file: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
        let spent = self.downloaded.load(Ordering::Relaxed);
        let budget = self.limits.max_update_bytes.saturating_sub(spent);
        if budget == 0 {
            return Err(FetchError::TooLarge {
                file: format!("{role} ({file})"),
                limit: self.limits.max_update_bytes,
            });
        }
        let limit = limit.min(budget);
        // Slow retrieval: one deadline for the whole update, on top of the source's own
        // per-request timeouts.
        let bytes =
            tokio::time::timeout_at(self.deadline, self.source.fetch(self.gun, file, limit))
                .await
                .map_err(|_| FetchError::Unreachable {
                    file: file.to_owned(),
                    reason: format!(
                        "trust update not complete within {:?} (trust_timeout)",
                        self.limits.update_deadline
                    ),
                })??;
        self.downloaded
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        // Never trust the source to have enforced the bound.
        if bytes.len() as u64 > limit {
            return Err(FetchError::TooLarge {
                file: format!("{role} ({file})"),
                limit,
            });
        }
        Ok(bytes.to_vec())
    }

    pub(crate) async fn run(&self) -> Result<TrustedRepo, TrustError> {
        let stored = self.store.load(self.gun)?;
        let mut state = stored
            .clone()
            .unwrap_or_else(|| TrustedState::new(self.gun));

        let (root, root_offline) = self.update_root(&state).await?;
        // Record which pinning entry this root now satisfies (`still_pinned`); a new root
        // starts the record afresh.
        let root_changed = state.bytes(ROOT).as_deref() != Some(root.bytes.as_slice());
        if root_changed {
            state.pins_checked.clear();
        }
        let pins_changed = state
            .pins_checked
            .insert(self.pinning.fingerprint_for(self.gun));
        while state.pins_checked.len() > TrustedState::MAX_PINS_CHECKED {
            state.pins_checked.pop_first();
        }
        // Pin a newly trusted root at once (as Notary caches each verified role), so a failure
        // further down cannot make the next attempt fall back to first-use trust.
        if root_changed {
            // Fast-forward recovery: a rotation that replaced a role's keys drops that role's
            // stale floor (TUF 5.3.11; `floors`).
            // The previous root was verified when stored (and again by `update_root`); only
            // its role table is read here.
            if let Some(previous) = state.bytes(ROOT) {
                let previous: wire::Root =
                    wire::Envelope::parse(ROOT, &previous)?.typed(ROOT, "Root")?;
                floors::reset_rotated_roles(&mut state, &previous, &root, self.now);
            }
            state.set_bytes(ROOT, &root.bytes);
            state.raise_version(ROOT, root.version);
            self.store.save(&state)?;
        } else if pins_changed {
            self.store.save(&state)?;
        }
        let stored = Some(state.clone());

        // Timestamp: always fetched fresh; the stored one only when the server is unreachable,
        // and then it must still verify and be unexpired.
        let (timestamp, offline) = match self
            .fetch(TIMESTAMP, "timestamp.json", self.limits.timestamp)
            .await
        {
            Ok(bytes) => (
                roles::load_timestamp(&root, &bytes, state.version(TIMESTAMP), self.now)?,
                root_offline,
            ),
            Err(e) if is_offline(&e) => match state.bytes(TIMESTAMP) {
                Some(bytes) => (
                    roles::load_timestamp(&root, &bytes, state.version(TIMESTAMP), self.now)?,
                    true,
                ),
                None if matches!(e, FetchError::NotFound { .. }) => {
                    return Err(TrustError::NoTrustData {
                        gun: self.gun.to_owned(),
                    })
                }
                None => return Err(fetch_error(TIMESTAMP, e)),
            },
            Err(e) => return Err(fetch_error(TIMESTAMP, e)),
        };

        // Snapshot: exactly the bytes the timestamp records (fetched by hash).
        let snap_meta = meta_of(&timestamp.timestamp.meta, TIMESTAMP, SNAPSHOT)?;
        let snap_bytes = self
            .consistent_bytes(&state, SNAPSHOT, snap_meta, TIMESTAMP)
            .await?;
        let snapshot = roles::load_snapshot(
            &root,
            &timestamp,
            &snap_bytes,
            state.version(SNAPSHOT),
            self.now,
        )?;

        // The root we trust must be the one the snapshot records (`builder.go`,
        // `validateChecksumsFromSnapshot`: roles loaded before the snapshot are checked
        // against it), so a server cannot pair metadata with a root it was not made under.
        let root_meta = meta_of(&snapshot.snapshot.meta, SNAPSHOT, ROOT)?;
        roles::check_meta(ROOT, &root.bytes, root_meta, SNAPSHOT)?;

        // Targets: exactly the bytes the snapshot records, signed by the root's targets keys.
        let targets_meta = meta_of(&snapshot.snapshot.meta, SNAPSHOT, TARGETS)?;
        let targets_bytes = self
            .consistent_bytes(&state, TARGETS, targets_meta, SNAPSHOT)
            .await?;
        let targets = roles::load_targets(
            &root.authority(TARGETS)?,
            &snapshot,
            &targets_bytes,
            state.version(TARGETS),
            self.now,
        )?;

        let Delegated {
            loaded,
            skipped,
            resets,
        } = self.load_delegations(&state, &snapshot, targets).await?;

        // Remember tags a role signed before and has since dropped (revocations).
        for (name, t) in &loaded {
            if let Some(old) = state.bytes(name).filter(|old| *old != t.bytes) {
                state.note_revocations(name, &tags_of(name, &old), t.targets.targets.keys());
            }
        }
        // Persist: the trusted root, versions only ever raised (but for floors found stale),
        // and the verified bytes.
        for name in &resets {
            state.reset_floor(name, self.now);
        }
        state.metadata.clear();
        state.set_bytes(ROOT, &root.bytes);
        state.raise_version(ROOT, root.version);
        state.set_bytes(TIMESTAMP, &timestamp.bytes);
        state.raise_version(TIMESTAMP, timestamp.version);
        state.set_bytes(SNAPSHOT, &snapshot.bytes);
        state.raise_version(SNAPSHOT, snapshot.version);
        for (name, t) in &loaded {
            state.set_bytes(name, &t.bytes);
            state.raise_version(name, t.version);
        }
        if stored.as_ref() != Some(&state) {
            self.store.save(&state)?;
        }
        Ok(TrustedRepo {
            gun: self.gun.to_owned(),
            root,
            timestamp,
            snapshot,
            targets: loaded,
            skipped,
            offline,
            revoked: state.revoked.clone(),
        })
    }

    /// Root (`tufclient.updateRoot`, `trustpinning/certs.go` `ValidateRoot`).
    async fn update_root(&self, state: &TrustedState) -> Result<(LoadedRoot, bool), TrustError> {
        let trusted = match state.bytes(ROOT) {
            Some(bytes) => {
                let trusted = roles::reload_trusted_root(self.gun, &bytes, self.now)?;
                self.still_pinned(state, trusted)
            }
            None => None,
        };
        let fetched = self.fetch(ROOT, "root.json", self.limits.root).await;
        match (trusted, fetched) {
            // First contact: trust pinning or TOFU.
            (None, Ok(bytes)) => Ok((
                roles::accept_first_root(self.gun, &bytes, self.pinning, self.now)?,
                false,
            )),
            (None, Err(FetchError::NotFound { .. })) => Err(TrustError::NoTrustData {
                gun: self.gun.to_owned(),
            }),
            (None, Err(e)) => Err(fetch_error(ROOT, e)),
            // Unchanged: the cached root is the pin; it must still be unexpired.
            (Some(t), Ok(bytes)) if bytes == t.bytes => {
                roles::check_expiry(ROOT, t.expires, self.now)?;
                Ok((t, false))
            }
            (Some(t), Ok(bytes)) => Ok((self.rotate(t, &bytes).await?, false)),
            // Unreachable: keep the trusted root (if unexpired); the timestamp step decides
            // whether stored data may be used.
            (Some(t), Err(e)) if is_offline(&e) => {
                roles::check_expiry(ROOT, t.expires, self.now)?;
                Ok((t, true))
            }
            (Some(_), Err(e)) => Err(fetch_error(ROOT, e)),
        }
    }

    /// The trusted root, unless the pinning that applies to this GUN changed since it was
    /// trusted and the new pinning would not accept it at first contact.
    ///
    /// Notary consults the pins only at first contact (`trustpinning/certs.go` `ValidateRoot`
    /// without a previous root; `tufclient.go` `bootstrapClient`): a cached root is itself the
    /// pin, so pins made stricter later change nothing for a repository already trusted —
    /// there, only deleting the trust directory makes a new pin bite. trustgate keeps that
    /// rule while the pins stay as they were (rotations signed by the trusted root are
    /// followed even when the new root would not satisfy a CA pin, as in Notary), but when
    /// the operator *changes* what applies to this GUN, the stored root must satisfy the new
    /// `certs`/`ca` entry as a first-contact root would (`tofu = false` alone refuses no root
    /// already trusted, as in Notary). One that does not is set aside: the server's root then meets
    /// the new pins as at first contact, and every version floor is kept (a floor drops only
    /// if the new root replaced that role's keys, `floors`), so an edit of the pins can make
    /// trust stricter but never resets rollback protection. One consequence of sharing the
    /// state per server: when two rules pin one GUN differently and a rotation is followed
    /// under one of them, the other checks the rotated root against its own pins again (and
    /// refuses it if they do not accept it) — fail closed, where Notary with separate trust
    /// directories would follow the rotation for both.
    fn still_pinned(&self, state: &TrustedState, trusted: LoadedRoot) -> Option<LoadedRoot> {
        let current = self.pinning.fingerprint_for(self.gun);
        if state.pins_checked.contains(&current) {
            return Some(trusted);
        }
        match roles::root_satisfies_pins(self.gun, &trusted.bytes, self.pinning, self.now) {
            Ok(()) => Some(trusted),
            Err(e) => {
                tracing::warn!(gun = self.gun, pinning = %current, error = %e, "the trusted root does not satisfy the changed trust pinning: the server's root must (version floors kept)");
                None
            }
        }
    }

    /// Root rotation: every version after the trusted one, up to the newest, must be signed by
    /// a threshold of its predecessor's root keys and of its own (`updateRootVersions`).
    async fn rotate(
        &self,
        trusted: LoadedRoot,
        newest_bytes: &[u8],
    ) -> Result<LoadedRoot, TrustError> {
        let newest = roles::root_version(newest_bytes)?;
        if newest < trusted.version {
            // Check for a rollback attack on the root.
            return Err(TrustError::Rollback {
                role: ROOT.into(),
                trusted: trusted.version,
                got: newest,
            });
        }
        if newest - trusted.version > self.limits.max_root_rotations {
            return Err(TrustError::malformed(
                ROOT,
                format!("version jumps from {} to {newest}", trusted.version),
            ));
        }
        // Rotating away from an expired trusted root: the configured pins apply to the new
        // roots (tufclient.go:372-378 `BootstrapNewBuilderWithNewTrustpin`).
        let pins = roles::check_expiry(ROOT, trusted.expires, self.now)
            .is_err()
            .then_some(self.pinning);
        let mut prev = trusted;
        for v in prev.version + 1..newest {
            let file = format!("{v}.root.json");
            let bytes = self
                .fetch(ROOT, &file, self.limits.root)
                .await
                .map_err(|e| fetch_error(ROOT, e))?;
            prev =
                roles::accept_next_root(self.gun, &prev, &bytes, Some(v), false, pins, self.now)?;
        }
        roles::accept_next_root(
            self.gun,
            &prev,
            newest_bytes,
            Some(newest),
            true,
            pins,
            self.now,
        )
    }

    /// The bytes a parent records for `role`: the stored copy if it matches, else downloaded
    /// by hash (`<role>.<sha256 hex>.json`), bounded by the recorded length.
    async fn consistent_bytes(
        &self,
        state: &TrustedState,
        role: &str,
        meta: &FileMeta,
        recorded_by: &str,
    ) -> Result<Vec<u8>, TrustError> {
        if let Some(bytes) = state.bytes(role) {
            if roles::matches_meta(&bytes, meta) {
                return Ok(bytes);
            }
        }
        let length = wire::meta_length(role, meta)?;
        if length > self.limits.max_recorded {
            return Err(TrustError::TooLarge {
                role: role.to_owned(),
                limit: self.limits.max_recorded,
            });
        }
        let file = match wire::decoded_hashes(role, meta)?
            .into_iter()
            .find(|(a, _)| *a == wire::SHA256)
        {
            Some((_, h)) => format!("{role}.{}.json", hex::encode(h)),
            None => format!("{role}.json"),
        };
        // One byte past the recorded length so that an over-long file is reported as a length
        // mismatch rather than silently truncated.
        self.fetch(role, &file, length.saturating_add(1))
            .await
            .map_err(|e| match e {
                // Past the recorded length (not past the update budget): the file is longer than
                // its parent says.
                FetchError::TooLarge { limit, .. } if limit == length.saturating_add(1) => {
                    TrustError::LengthMismatch {
                        role: role.to_owned(),
                        expected: length,
                        got: limit,
                        recorded_by: recorded_by.to_owned(),
                    }
                }
                e => fetch_error(role, e),
            })
    }

    /// Delegations, parents before children, only those the snapshot lists. An expired or
    /// under-threshold delegation is skipped; any other error fails the update
    /// (`tufclient.downloadTargets`).
    async fn load_delegations(
        &self,
        state: &TrustedState,
        snapshot: &LoadedSnapshot,
        targets: LoadedTargets,
    ) -> Result<Delegated, TrustError> {
        let mut loaded = BTreeMap::from([(TARGETS.to_owned(), targets)]);
        let mut skipped = BTreeMap::new();
        let mut resets = Vec::new();
        let mut queue = VecDeque::from([TARGETS.to_owned()]);
        while let Some(parent_name) = queue.pop_front() {
            let Some(parent) = loaded.get(&parent_name).cloned() else {
                continue;
            };
            let Some(delegations) = &parent.targets.delegations else {
                continue;
            };
            for child in &delegations.roles {
                // Only delegations with checksum information in the snapshot are fetched
                // (`tufclient.go` downloadTargets:223-227, `ChecksumKnown`: some hash or a
                // length > 0). Others are as if unlisted: invisible to lookups.
                let Some(meta) = snapshot.snapshot.meta.get(&child.name) else {
                    continue;
                };
                if meta.hashes.is_empty() && meta.length == 0 {
                    continue;
                }
                if loaded.contains_key(&child.name) || skipped.contains_key(&child.name) {
                    continue;
                }
                // The work bound counts every delegation fetched, skipped ones too: a parent
                // listing thousands of mis-signed children must not cost thousands of fetches.
                if loaded.len() - 1 + skipped.len() >= self.limits.max_delegations {
                    return Err(TrustError::malformed(&child.name, "too many delegations"));
                }
                let authority = delegation::delegation_authority(&parent_name, delegations, child)?;
                let bytes = self
                    .consistent_bytes(state, &child.name, meta, SNAPSHOT)
                    .await?;
                let mut result = roles::load_targets(
                    &authority,
                    snapshot,
                    &bytes,
                    state.version(&child.name),
                    self.now,
                );
                // Fast-forward recovery for delegations (`floors`): a floor set by a copy that
                // the parent's current keys no longer vouch for is stale. Checked only when it
                // would refuse, so an ordinary update verifies nothing twice.
                if matches!(result, Err(TrustError::Rollback { .. }))
                    && state
                        .bytes(&child.name)
                        .is_some_and(|stored| floors::is_stale(&authority, &stored))
                {
                    tracing::warn!(gun = self.gun, role = %child.name, "the parent replaced this delegation's keys: its version floor is dropped (fast-forward recovery)");
                    resets.push(child.name.clone());
                    result = roles::load_targets(&authority, snapshot, &bytes, None, self.now);
                }
                match result {
                    Ok(t) => {
                        loaded.insert(child.name.clone(), t);
                        queue.push_back(child.name.clone());
                    }
                    Err(e @ (TrustError::Expired { .. } | TrustError::ThresholdNotMet { .. })) => {
                        tracing::warn!(gun = self.gun, role = %child.name, error = %e, "skipping delegation");
                        skipped.insert(child.name.clone(), e);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(Delegated {
            loaded,
            skipped,
            resets,
        })
    }
}

/// What [`Update::load_delegations`] found: roles loaded (with `targets`), roles skipped and
/// why, and delegations whose stale floor was dropped (fast-forward recovery).
struct Delegated {
    loaded: BTreeMap<String, LoadedTargets>,
    skipped: BTreeMap<String, TrustError>,
    resets: Vec<String>,
}

fn meta_of<'m>(
    meta: &'m BTreeMap<String, FileMeta>,
    parent: &str,
    role: &str,
) -> Result<&'m FileMeta, TrustError> {
    meta.get(role)
        .ok_or_else(|| TrustError::malformed(parent, format!("meta lacks {role}")))
}

/// Target names in a previously verified targets file (best effort: it verified when stored).
fn tags_of(role: &str, bytes: &[u8]) -> Vec<String> {
    wire::Envelope::parse(role, bytes)
        .and_then(|env| env.typed::<wire::Targets>(role, "Targets"))
        .map(|t| t.targets.into_keys().collect())
        .unwrap_or_default()
}
