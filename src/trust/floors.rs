//! Fast-forward attack recovery (TUF specification 5.3.11; issue 7, D3).
//!
//! Rollback protection keeps, per role, the highest version ever accepted (the *floor*, see
//! [`store`](super::store)). An attacker who briefly held a role's key can publish an absurd
//! version (say timestamp 2^31); once the publisher recovers by rotating that key in a new
//! root, the legitimate files start again at low versions, and a floor that is never lowered
//! would refuse the repository forever.
//!
//! Go's rule (`client/tufclient.go` `tryLoadRemote`, tufclient.go:303-308): the floor is the
//! version of the cached copy *only if that copy still verifies* under the trusted root
//! (`oldBuilder.Load(role, old, 1, true)`, expiry ignored), else 1. After a rotation the stale
//! copy, signed by the old key, no longer verifies, so its version stops counting. Go applies
//! it per role: rotating the timestamp key resets the timestamp only. The TUF specification
//! (5.3.11) resets timestamp *and* snapshot when either rotates, because TUF's timestamp
//! records the snapshot's version; Notary's records only hashes and length, and Notary's
//! snapshot records no versions for targets, so a key change of one Notary role says nothing
//! about another's floor. We follow Go: per role, never across roles. In particular rotating
//! the snapshot key does not reset targets (their versions are guarded by the targets key
//! alone here), and rotating targets' keys does not reset its delegations (signed by their own
//! keys, named by targets).
//!
//! We reset only when both hold, which is Go's effect restricted to verified rotations:
//! - a verified new root changed the role's keys or threshold, and
//! - the stored copy of the role no longer carries a threshold of valid signatures under the
//!   new root.
//!
//! So merely adding a key (old one kept) keeps the floor, and an old file signed by the old
//! key cannot be replayed below it. Unlike Go, which recovers on the run *after* the rotation
//! (its old builder still holds the previous root during the rotating run), recovery happens
//! in the same update.

use super::roles::{LoadedRoot, SNAPSHOT, TARGETS, TIMESTAMP};
use super::store::TrustedState;
use super::verify::verify_threshold;
use super::wire::{Envelope, Root};

/// Called when `new` (verified) replaces `previous` as the trusted root. Drops the stored
/// copy and floor of every top-level role whose authority `new` changed so that the stored
/// copy no longer verifies. Returns the roles reset, for logging and tests.
pub(crate) fn reset_rotated_roles(
    state: &mut TrustedState,
    previous: &Root,
    new: &LoadedRoot,
) -> Vec<&'static str> {
    let mut reset = Vec::new();
    for role in [TIMESTAMP, SNAPSHOT, TARGETS] {
        let (Some(old_spec), Some(new_spec)) = (previous.roles.get(role), new.root.roles.get(role))
        else {
            continue;
        };
        let same_keys = {
            let mut a: Vec<&String> = old_spec.keyids.iter().collect();
            let mut b: Vec<&String> = new_spec.keyids.iter().collect();
            a.sort();
            a.dedup();
            b.sort();
            b.dedup();
            // Keyids are content hashes (checked at every signature): equal ids, equal keys.
            a == b
        };
        if same_keys && old_spec.threshold == new_spec.threshold {
            continue;
        }
        let still_verifies = state.bytes(role).is_some_and(|bytes| {
            let Ok(authority) = new.authority(role) else {
                return false;
            };
            Envelope::parse(role, &bytes)
                .and_then(|env| {
                    let canonical = env.canonical_signed(role)?;
                    verify_threshold(&authority, &env, &canonical)
                })
                .is_ok()
        });
        // No stored copy to judge by: keep the floor (fail closed).
        if still_verifies || state.bytes(role).is_none() {
            continue;
        }
        state.reset_floor(role, new.version);
        tracing::warn!(
            gun = %state.gun,
            role,
            root_version = new.version,
            "role's keys were rotated: its stored copy and version floor are dropped (fast-forward recovery)"
        );
        reset.push(role);
    }
    reset
}
