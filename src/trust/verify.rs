//! THE threshold function: every role — root, timestamp, snapshot, targets, each delegation,
//! and a new root against the previous root's keys — is checked here and nowhere else
//! (`tuf/signed/verify.go`, `VerifySignatures`; DESIGN practice 2).

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;

use super::errors::TrustError;
use super::keys::{key_id, PublicKey};
use super::wire::{Envelope, TufKey};

/// The keys authorised for a role (keyid as listed → key) and how many must sign.
#[derive(Debug, Clone)]
pub struct Authority<'a> {
    pub role: &'a str,
    pub keys: BTreeMap<&'a str, &'a TufKey>,
    pub threshold: i64,
}

/// Checks that a threshold of distinct authorised keys produced a valid signature over
/// `canonical` (the canonical JSON of the envelope's generic `signed` value). Returns the
/// keyids that counted, one per distinct key, sorted.
///
/// Rules, in Notary's order:
/// - no signatures at all, or a threshold below 1, is an error;
/// - a signature whose keyid the role does not authorise is skipped;
/// - an authorised key whose content-derived keyid differs from the id it is listed under is a
///   hard error (a relabelled key must not pass as another);
/// - a signature that does not verify (bad bytes, wrong method for the key type, unusable key)
///   is skipped;
/// - what counts toward the threshold is distinct key *material*: the same key listed twice
///   under two ids, or one signature repeated, counts once.
pub fn verify_threshold(
    authority: &Authority<'_>,
    envelope: &Envelope,
    canonical: &[u8],
) -> Result<Vec<String>, TrustError> {
    let role = authority.role;
    if envelope.signatures.is_empty() {
        return Err(TrustError::Unsigned {
            role: role.to_owned(),
        });
    }
    let threshold = u64::try_from(authority.threshold)
        .ok()
        .filter(|t| *t >= 1)
        .ok_or(TrustError::InvalidThreshold {
            role: role.to_owned(),
            threshold: authority.threshold,
        })?;

    let mut counted_material: BTreeSet<(super::keys::KeyAlg, Vec<u8>)> = BTreeSet::new();
    let mut counted_ids: Vec<String> = Vec::new();
    for sig in &envelope.signatures {
        let Some(tuf_key) = authority.keys.get(sig.keyid.as_str()) else {
            continue;
        };
        let parsed = PublicKey::from_tuf(tuf_key);
        let computed = match &parsed {
            Ok(k) => k.keyid().to_owned(),
            Err(_) => key_id(&tuf_key.keytype, &tuf_key.keyval.public),
        };
        if computed != sig.keyid {
            return Err(TrustError::KeyIdMismatch {
                role: role.to_owned(),
                listed: sig.keyid.clone(),
                computed,
            });
        }
        let Ok(key) = parsed else { continue };
        let Ok(raw_sig) = base64::engine::general_purpose::STANDARD.decode(sig.sig.as_bytes())
        else {
            continue;
        };
        if !key.verify(&sig.method, canonical, &raw_sig) {
            continue;
        }
        let (alg, material) = key.material_id();
        if counted_material.insert((alg, material.to_vec())) {
            counted_ids.push(sig.keyid.clone());
        }
    }
    let valid = counted_material.len();
    if (valid as u64) < threshold {
        return Err(TrustError::ThresholdNotMet {
            role: role.to_owned(),
            valid,
            threshold,
        });
    }
    counted_ids.sort();
    Ok(counted_ids)
}
