//! Pure loaders, one per role: bytes + what is already trusted + `now` in, a loaded role or a
//! precise error out. Each applies Notary's per-role order (`tuf/builder.go`):
//! checksum → signatures → structure → version ≥ last trusted → expiry.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256, Sha512};
use time::OffsetDateTime;

use super::delegation::check_delegations;
use super::errors::TrustError;
use super::pin::{pinned_subset, previous_root_keys, valid_root_certs, TrustPinning};
use super::verify::{verify_threshold, Authority};
use super::wire::{self, Envelope, FileMeta, Root, Snapshot, Targets, Timestamp, TufKey};

pub const ROOT: &str = "root";
pub const TARGETS: &str = "targets";
pub const SNAPSHOT: &str = "snapshot";
pub const TIMESTAMP: &str = "timestamp";

/// A trusted root.
#[derive(Debug, Clone)]
pub struct LoadedRoot {
    pub bytes: Vec<u8>,
    pub root: Root,
    pub version: u64,
    pub expires: OffsetDateTime,
    /// Until when the certificates that signed it still make a threshold: after that the
    /// root is refused when reloaded (Notary's cached-root check), so a repository kept in
    /// memory must not answer past it either.
    pub certs_valid_until: OffsetDateTime,
    pub signers: Vec<String>,
}

impl LoadedRoot {
    /// The keys and threshold the root assigns to a top-level role.
    pub fn authority<'a>(&'a self, role: &'a str) -> Result<Authority<'a>, TrustError> {
        let spec =
            self.root.roles.get(role).ok_or_else(|| {
                TrustError::malformed(ROOT, format!("role {role} is not defined"))
            })?;
        Ok(Authority {
            role,
            keys: keys_for(&self.root.keys, &spec.keyids),
            threshold: spec.threshold,
        })
    }
}

pub(crate) fn keys_for<'a>(
    keys: &'a BTreeMap<String, TufKey>,
    ids: &'a [String],
) -> BTreeMap<&'a str, &'a TufKey> {
    ids.iter()
        .filter_map(|id| keys.get(id).map(|k| (id.as_str(), k)))
        .collect()
}

/// Parses a root's envelope and checks its structure (`tuf/data/root.go`,
/// `isValidRootStructure`): `_type` Root, version ≥ 1, all four roles defined with a
/// threshold ≥ 1, every listed keyid defined in `keys`.
fn parse_root(bytes: &[u8]) -> Result<(Envelope, Vec<u8>, Root, u64), TrustError> {
    let env = Envelope::parse(ROOT, bytes)?;
    let canonical = env.canonical_signed(ROOT)?;
    let root: Root = env.typed(ROOT, "Root")?;
    let version = wire::version(ROOT, root.version)?;
    for role in [ROOT, TARGETS, SNAPSHOT, TIMESTAMP] {
        let spec = root
            .roles
            .get(role)
            .ok_or_else(|| TrustError::malformed(ROOT, format!("role {role} is not defined")))?;
        if spec.threshold < 1 {
            return Err(TrustError::InvalidThreshold {
                role: role.to_owned(),
                threshold: spec.threshold,
            });
        }
        if let Some(missing) = spec.keyids.iter().find(|id| !root.keys.contains_key(*id)) {
            return Err(TrustError::UnknownKey {
                role: role.to_owned(),
                keyid: missing.clone(),
            });
        }
    }
    Ok((env, canonical, root, version))
}

/// The root role's keys (present: `parse_root` checked), without indexing that could panic.
fn root_spec(root: &Root) -> Result<&super::wire::RoleKeys, TrustError> {
    root.roles
        .get(ROOT)
        .ok_or_else(|| TrustError::malformed(ROOT, "role root is not defined"))
}

pub fn check_expiry(
    role: &str,
    expires: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<(), TrustError> {
    if now >= expires {
        return Err(TrustError::Expired {
            role: role.to_owned(),
            expires,
        });
    }
    Ok(())
}

fn check_version(role: &str, got: u64, trusted: Option<u64>) -> Result<(), TrustError> {
    if let Some(trusted) = trusted {
        if got < trusted {
            return Err(TrustError::Rollback {
                role: role.to_owned(),
                trusted,
                got,
            });
        }
    }
    Ok(())
}

/// Root seen for the first time for this GUN (`trustpinning/certs.go`, `ValidateRoot` without
/// a previous root): its certificates must be valid root certs, the pinning must accept
/// them, and a threshold of the pinned ones must have signed it. Then it must be unexpired.
pub fn accept_first_root(
    gun: &str,
    bytes: &[u8],
    pinning: &TrustPinning,
    now: OffsetDateTime,
) -> Result<LoadedRoot, TrustError> {
    let loaded = signed_by_own_certs(gun, bytes, parse_root(bytes)?, Some((pinning, true)), now)?;
    check_expiry(ROOT, loaded.expires, now)?;
    Ok(loaded)
}

/// The last step of `ValidateRoot` (certs.go:99-173) for every root it loads: a threshold of
/// the root's own valid root certificates (`validRootLeafCerts(..., true)`), narrowed by the
/// pinning when it applies (`(pinning, first_bootstrap)`), must have signed it.
fn signed_by_own_certs(
    gun: &str,
    bytes: &[u8],
    (env, canonical, root, version): (Envelope, Vec<u8>, Root, u64),
    pins: Option<(&TrustPinning, bool)>,
    now: OffsetDateTime,
) -> Result<LoadedRoot, TrustError> {
    let spec = root_spec(&root)?;
    let threshold = spec.threshold;
    let valid = valid_root_certs(gun, &root, &spec.keyids, now)?;
    let not_after: BTreeMap<String, OffsetDateTime> = valid
        .iter()
        .filter_map(|(id, (_, key))| key.cert().map(|c| (id.to_string(), c.not_after)))
        .collect();
    let keys = match pins {
        Some((pinning, first_bootstrap)) => {
            pinned_subset(pinning, gun, valid, first_bootstrap, now)?
        }
        None => valid.into_iter().map(|(id, (k, _))| (id, k)).collect(),
    };
    let authority = Authority {
        role: ROOT,
        keys,
        threshold,
    };
    let signers = verify_threshold(&authority, &env, &canonical)?;
    // After the threshold-th latest notAfter among the signers, too few remain valid.
    let mut ends: Vec<OffsetDateTime> = signers
        .iter()
        .filter_map(|id| not_after.get(id).copied())
        .collect();
    ends.sort_unstable_by(|a, b| b.cmp(a));
    let k = usize::try_from(threshold).unwrap_or(1).max(1);
    let certs_valid_until = ends
        .get(k - 1)
        .or(ends.last())
        .copied()
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let expires = root.expires.0;
    Ok(LoadedRoot {
        bytes: bytes.to_vec(),
        root,
        version,
        expires,
        certs_valid_until,
        signers,
    })
}

/// The next root in a rotation (`ValidateRoot` with a previous root, and
/// `tufclient.updateRootVersions`): it must be signed by a threshold of the previous root's
/// root certificates *and* a threshold of its own valid root certificates. `expected_version`
/// is the `{v}` of `{v}.root.json`. Every root of the walk, intermediate or final, must carry
/// valid root certificates (Go runs `validRootLeafCerts(..., true)` for every root it loads,
/// certs.go:101); only the final root must itself be unexpired (builder.go:451).
///
/// `pinning` is `Some` when the configured pins apply. Notary validates newer roots with an
/// empty trust-pinning configuration while the cached root is valid — it is itself the pin —
/// but with the configured one when the cached root has expired
/// (`BootstrapNewBuilderWithNewTrustpin`, tufclient.go:372-378), TOFU then being allowed
/// (not a first bootstrap).
pub fn accept_next_root(
    gun: &str,
    prev: &LoadedRoot,
    bytes: &[u8],
    expected_version: Option<u64>,
    is_final: bool,
    pinning: Option<&TrustPinning>,
    now: OffsetDateTime,
) -> Result<LoadedRoot, TrustError> {
    let (env, canonical, root, version) = parse_root(bytes)?;
    if let Some(want) = expected_version {
        if version != want {
            return Err(TrustError::malformed(
                ROOT,
                format!("{want}.root.json holds version {version}"),
            ));
        }
    }
    check_version(ROOT, version, Some(prev.version))?;
    let prev_spec = prev
        .root
        .roles
        .get(ROOT)
        .ok_or_else(|| TrustError::malformed(ROOT, "previous root lacks the root role"))?;
    let prev_auth = Authority {
        role: ROOT,
        keys: previous_root_keys(gun, &prev.root, &prev_spec.keyids),
        threshold: prev_spec.threshold,
    };
    match verify_threshold(&prev_auth, &env, &canonical) {
        Ok(_) => {}
        Err(TrustError::KeyIdMismatch { .. } | TrustError::ThresholdNotMet { .. }) => {
            return Err(TrustError::RootNotSignedByPrevious { version });
        }
        Err(e) => return Err(e),
    }
    let loaded = signed_by_own_certs(
        gun,
        bytes,
        (env, canonical, root, version),
        pinning.map(|p| (p, false)),
        now,
    )?;
    if is_final {
        check_expiry(ROOT, loaded.expires, now)?;
    }
    Ok(loaded)
}

/// The version a root file claims, read before deciding how to verify it.
pub fn root_version(bytes: &[u8]) -> Result<u64, TrustError> {
    parse_root(bytes).map(|(_, _, _, v)| v)
}

/// Re-checks a stored root (verified when it was accepted) as Notary loads its cached root
/// (`bootstrapClient`, tufclient.go:362-366: `ValidateRoot` with an empty pinning config):
/// a threshold of its root certificates that are valid *now* must have signed it. A trusted
/// root whose certificates have expired since is refused — Notary fails hard there too — with
/// the certificate's keyid, CN and notAfter. The root's own expiry is the caller's business:
/// an expired trusted root still anchors a rotation to a newer one.
pub fn reload_trusted_root(
    gun: &str,
    bytes: &[u8],
    now: OffsetDateTime,
) -> Result<LoadedRoot, TrustError> {
    signed_by_own_certs(gun, bytes, parse_root(bytes)?, None, now)
}

/// Whether a stored root satisfies `pinning`'s entry for this GUN now (the pinning changed
/// for this GUN since the root was trusted): its root certificates must be valid, and when a
/// `certs` or `ca` entry applies, a threshold of those it accepts must have signed it.
/// `tofu = false` alone does not refuse it: a root already trusted is not a first use
/// (`trustpin.go`: TOFU is refused only on first bootstrap). Its own expiry is not judged
/// here (an expired trusted root still anchors a rotation).
pub fn root_satisfies_pins(
    gun: &str,
    bytes: &[u8],
    pinning: &TrustPinning,
    now: OffsetDateTime,
) -> Result<(), TrustError> {
    signed_by_own_certs(gun, bytes, parse_root(bytes)?, Some((pinning, false)), now).map(|_| ())
}

/// Checks bytes against the length and every supported hash their parent recorded
/// (`tuf/data/types.go`, `CheckHashes`: all present must match, at least one present).
pub fn check_meta(
    role: &str,
    bytes: &[u8],
    meta: &FileMeta,
    recorded_by: &str,
) -> Result<(), TrustError> {
    let expected = wire::meta_length(recorded_by, meta)?;
    let got = bytes.len() as u64;
    if got != expected {
        return Err(TrustError::LengthMismatch {
            role: role.to_owned(),
            expected,
            got,
            recorded_by: recorded_by.to_owned(),
        });
    }
    for (alg, want) in wire::decoded_hashes(recorded_by, meta)? {
        let actual = match alg {
            wire::SHA256 => Sha256::digest(bytes).to_vec(),
            _ => Sha512::digest(bytes).to_vec(),
        };
        // Both sides are public data; constant time is not needed here.
        if actual != want {
            return Err(TrustError::HashMismatch {
                role: role.to_owned(),
                algorithm: alg.to_owned(),
                recorded_by: recorded_by.to_owned(),
            });
        }
    }
    Ok(())
}

/// Whether `bytes` match `meta` (used to reuse stored copies).
pub fn matches_meta(bytes: &[u8], meta: &FileMeta) -> bool {
    check_meta("", bytes, meta, "").is_ok()
}

fn require_sha256(
    role: &str,
    meta: &BTreeMap<String, FileMeta>,
    entry: &str,
) -> Result<(), TrustError> {
    let m = meta
        .get(entry)
        .ok_or_else(|| TrustError::malformed(role, format!("meta lacks {entry}")))?;
    let hashes = wire::decoded_hashes(role, m)?;
    if !hashes.iter().any(|(alg, _)| *alg == wire::SHA256) {
        return Err(TrustError::malformed(
            role,
            format!("meta for {entry} lacks sha256"),
        ));
    }
    wire::meta_length(role, m)?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct LoadedTimestamp {
    pub bytes: Vec<u8>,
    pub timestamp: Timestamp,
    pub version: u64,
    pub expires: OffsetDateTime,
}

/// Timestamp (`tufclient.downloadTimestamp`, builder): signed by the root's timestamp keys,
/// records the snapshot with sha256, version ≥ last trusted, unexpired.
pub fn load_timestamp(
    root: &LoadedRoot,
    bytes: &[u8],
    trusted_version: Option<u64>,
    now: OffsetDateTime,
) -> Result<LoadedTimestamp, TrustError> {
    let env = Envelope::parse(TIMESTAMP, bytes)?;
    let canonical = env.canonical_signed(TIMESTAMP)?;
    verify_threshold(&root.authority(TIMESTAMP)?, &env, &canonical)?;
    let timestamp: Timestamp = env.typed(TIMESTAMP, "Timestamp")?;
    let version = wire::version(TIMESTAMP, timestamp.version)?;
    require_sha256(TIMESTAMP, &timestamp.meta, SNAPSHOT)?;
    // Check for a rollback attack, then for a freeze attack.
    check_version(TIMESTAMP, version, trusted_version)?;
    check_expiry(TIMESTAMP, timestamp.expires.0, now)?;
    let expires = timestamp.expires.0;
    Ok(LoadedTimestamp {
        bytes: bytes.to_vec(),
        timestamp,
        version,
        expires,
    })
}

#[derive(Debug, Clone)]
pub struct LoadedSnapshot {
    pub bytes: Vec<u8>,
    pub snapshot: Snapshot,
    pub version: u64,
    pub expires: OffsetDateTime,
}

/// Snapshot: bytes match the timestamp's record, signed by the root's snapshot keys, records
/// root and targets with sha256, version ≥ last trusted, unexpired.
pub fn load_snapshot(
    root: &LoadedRoot,
    timestamp: &LoadedTimestamp,
    bytes: &[u8],
    trusted_version: Option<u64>,
    now: OffsetDateTime,
) -> Result<LoadedSnapshot, TrustError> {
    let meta = timestamp
        .timestamp
        .meta
        .get(SNAPSHOT)
        .ok_or_else(|| TrustError::malformed(TIMESTAMP, "meta lacks snapshot"))?;
    check_meta(SNAPSHOT, bytes, meta, TIMESTAMP)?;
    let env = Envelope::parse(SNAPSHOT, bytes)?;
    let canonical = env.canonical_signed(SNAPSHOT)?;
    verify_threshold(&root.authority(SNAPSHOT)?, &env, &canonical)?;
    let snapshot: Snapshot = env.typed(SNAPSHOT, "Snapshot")?;
    let version = wire::version(SNAPSHOT, snapshot.version)?;
    require_sha256(SNAPSHOT, &snapshot.meta, ROOT)?;
    require_sha256(SNAPSHOT, &snapshot.meta, TARGETS)?;
    check_version(SNAPSHOT, version, trusted_version)?;
    check_expiry(SNAPSHOT, snapshot.expires.0, now)?;
    let expires = snapshot.expires.0;
    Ok(LoadedSnapshot {
        bytes: bytes.to_vec(),
        snapshot,
        version,
        expires,
    })
}

#[derive(Debug, Clone)]
pub struct LoadedTargets {
    pub role: String,
    pub bytes: Vec<u8>,
    pub targets: Targets,
    pub version: u64,
    pub expires: OffsetDateTime,
    pub signers: Vec<String>,
}

/// Targets or a delegation: bytes match the snapshot's record, a threshold of the keys its
/// parent names signed it, its own delegations are well-formed, version ≥ last trusted,
/// unexpired. The order follows Notary's builder exactly, which differs per kind:
/// top-level targets (`builder.go` `loadTargets`): checksum → signatures → structure →
/// version → expiry; a delegation (`loadDelegation`, builder.go:578-616): checksum →
/// structure → **version → signatures** → expiry. The order decides which error a file with
/// several faults gets, and so whether a delegation is skipped (bad signature, expired) or
/// fails the update (rollback, bad structure): a rolled-back *and* mis-signed delegation
/// fails the update, as in Go.
pub fn load_targets(
    authority: &Authority<'_>,
    snapshot: &LoadedSnapshot,
    bytes: &[u8],
    trusted_version: Option<u64>,
    now: OffsetDateTime,
) -> Result<LoadedTargets, TrustError> {
    let role = authority.role;
    let meta = snapshot
        .snapshot
        .meta
        .get(role)
        .ok_or_else(|| TrustError::malformed(SNAPSHOT, format!("meta lacks {role}")))?;
    check_meta(role, bytes, meta, SNAPSHOT)?;
    let env = Envelope::parse(role, bytes)?;
    let canonical = env.canonical_signed(role)?;
    let structure = || -> Result<(Targets, u64), TrustError> {
        let targets: Targets = env.typed(role, "Targets")?;
        let version = wire::version(role, targets.version)?;
        if let Some(delegations) = &targets.delegations {
            check_delegations(role, delegations)?;
        }
        Ok((targets, version))
    };
    let (targets, version, signers) = if role == TARGETS {
        let signers = verify_threshold(authority, &env, &canonical)?;
        let (targets, version) = structure()?;
        check_version(role, version, trusted_version)?;
        (targets, version, signers)
    } else {
        let (targets, version) = structure()?;
        check_version(role, version, trusted_version)?;
        let signers = verify_threshold(authority, &env, &canonical)?;
        (targets, version, signers)
    };
    check_expiry(role, targets.expires.0, now)?;
    let expires = targets.expires.0;
    Ok(LoadedTargets {
        role: role.to_owned(),
        bytes: bytes.to_vec(),
        targets,
        version,
        expires,
        signers,
    })
}
