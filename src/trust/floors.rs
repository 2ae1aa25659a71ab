//! Fast-forward attack recovery (TUF specification 5.3.11; issue 7, D3).
//!
//! Rollback protection keeps, per role, the highest version ever accepted (the *floor*, see
//! [`store`](super::store)). An attacker who briefly held a role's key can publish an absurd
//! version (say timestamp 2^31); once the publisher recovers by replacing that key, the
//! legitimate files start again at low versions, and a floor that is never lowered would
//! refuse the repository forever.
//!
//! Go's rule (`client/tufclient.go` `tryLoadRemote`, tufclient.go:303-308): the floor is the
//! version of the cached copy *only if that copy still verifies* under the trusted metadata
//! that names the role's keys (`oldBuilder.Load(role, old, 1, true)`, expiry ignored), else 1.
//! After a rotation the stale copy, signed by the replaced key, no longer verifies, so its
//! version stops counting. One rule, here for every role:
//!
//! **A floor is stale iff the stored copy of the role no longer carries a threshold of valid
//! signatures under the role's current, verified authority** (the new root for timestamp,
//! snapshot and targets; the verified parent for a delegation).
//!
//! Consequences, all as in Go:
//! - Only whoever may change the role's keys (the root keys; a delegation's parent) can drop
//!   its floor, and only by actually replacing the keys that signed the stored copy. Merely
//!   adding a key (old one kept) keeps the floor, so an old file signed by the old key cannot
//!   be replayed below it.
//! - Per role, never across roles. The TUF specification (5.3.11) resets timestamp *and*
//!   snapshot when either rotates, because TUF's timestamp records the snapshot's version;
//!   Notary's records only hashes and length, and Notary's snapshot records no versions for
//!   targets. So rotating the snapshot key does not reset targets (guarded by the targets key
//!   alone), rotating the timestamp key does not reset the snapshot, and rotating targets'
//!   keys does not reset its delegations (signed by their own keys).
//! - No stored copy (never fetched, or skipped last time): the floor stays (fail closed).
//!
//! Unlike Go, which recovers on the run *after* the rotation (its old builder still holds the
//! previous root during the rotating run), recovery happens in the same update.

use time::OffsetDateTime;

use super::errors::TrustError;
use super::roles::{LoadedRoot, SNAPSHOT, TARGETS, TIMESTAMP};
use super::store::TrustedState;
use super::verify::{verify_threshold, Authority};
use super::wire::{Envelope, Root};

/// Whether `stored` (the last verified copy of `authority.role`) fails to meet the threshold
/// of `authority`. Only a threshold failure counts: an unparsable stored copy (local
/// corruption) keeps the floor.
pub(crate) fn is_stale(authority: &Authority<'_>, stored: &[u8]) -> bool {
    let Ok(env) = Envelope::parse(authority.role, stored) else {
        return false;
    };
    let Ok(canonical) = env.canonical_signed(authority.role) else {
        return false;
    };
    matches!(
        verify_threshold(authority, &env, &canonical),
        Err(TrustError::ThresholdNotMet { .. })
    )
}

/// Called when `new` (verified) replaces `previous` as the trusted root: drops the stored
/// copy and floor of each top-level role whose stored copy `new` no longer lets verify.
/// Returns the roles reset.
pub(crate) fn reset_rotated_roles(
    state: &mut TrustedState,
    previous: &Root,
    new: &LoadedRoot,
    now: OffsetDateTime,
) -> Vec<&'static str> {
    let mut reset = Vec::new();
    for role in [TIMESTAMP, SNAPSHOT, TARGETS] {
        let (Some(old_spec), Some(new_spec)) = (previous.roles.get(role), new.root.roles.get(role))
        else {
            continue;
        };
        // Shortcut: unchanged keys and threshold cannot invalidate the stored copy (keyids
        // are content hashes, checked at every signature).
        let sorted = |ids: &[String]| {
            let mut v: Vec<String> = ids.to_vec();
            v.sort();
            v.dedup();
            v
        };
        if sorted(&old_spec.keyids) == sorted(&new_spec.keyids)
            && old_spec.threshold == new_spec.threshold
        {
            continue;
        }
        let (Some(stored), Ok(authority)) = (state.bytes(role), new.authority(role)) else {
            continue;
        };
        if !is_stale(&authority, &stored) {
            continue;
        }
        state.reset_floor(role, now);
        tracing::warn!(
            gun = %state.gun,
            role,
            root_version = new.version,
            "the new root replaced this role's keys: its stored copy and version floor are dropped (fast-forward recovery)"
        );
        reset.push(role);
    }
    reset
}
