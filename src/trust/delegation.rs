//! What a targets file says about its delegations, checked as Notary checks it: the listing
//! itself (at the parent, `tuf/data/targets.go` `isValidTargetsStructure`) and the keys a
//! child is given (`tuf/tuf.go` `GetDelegationRole`). Any fault here fails the update.

use std::collections::BTreeSet;

use super::errors::TrustError;
use super::keys::{KeyAlg, PublicKey};
use super::roles::keys_for;
use super::verify::Authority;
use super::wire::{DelegationRole, Delegations};

/// The delegations a targets file lists (`tuf/data/targets.go` `isValidTargetsStructure`,
/// targets.go:45-52, with `root.go` `isValidRootRoleStructure`, root.go:54-70): each name is
/// valid and a direct child, each threshold is ≥ 1, each keyid is defined in
/// `delegations.keys`. Any fault makes the *parent* invalid, so the update fails (a
/// structure error is neither "expired" nor "threshold", `tufclient.go` downloadTargets).
/// Stricter than Go: a child listed twice is refused too. Go builds both listings from the
/// first one (`BuildDelegationRole` finds the first by name), so a second listing can only
/// mislead a reader; trustgate names it instead of silently shadowing it.
pub fn check_delegations(parent: &str, delegations: &Delegations) -> Result<(), TrustError> {
    let mut seen = BTreeSet::new();
    for child in &delegations.roles {
        check_delegation_name(parent, &child.name)?;
        let invalid = |reason: String| TrustError::InvalidDelegation {
            parent: parent.to_owned(),
            name: child.name.clone(),
            reason,
        };
        if !seen.insert(child.name.as_str()) {
            return Err(invalid("listed more than once".into()));
        }
        if child.threshold < 1 {
            return Err(invalid(format!("threshold {} is below 1", child.threshold)));
        }
        if let Some(id) = child
            .keyids
            .iter()
            .find(|id| !delegations.keys.contains_key(*id))
        {
            return Err(invalid(format!(
                "lists key {id}, which delegations.keys does not define"
            )));
        }
    }
    Ok(())
}

/// The keys and threshold `parent` gives its child `name` (`tuf/tuf.go` `GetDelegationRole`,
/// tuf.go:240-262). Every certificate-bearing key must pass `utils.ValidateCertificate(cert,
/// false)` (x509.go:308-325): a sane validity window, no SHA-1 signature, RSA ≥ 2048 bits;
/// its expiry is deliberately not checked ("use the TUF role expiry instead"). A key whose
/// certificate cannot be parsed is skipped there (`LoadCertFromPEM` fails → `continue`) and
/// here: it can then produce no valid signature. Any other fault fails the update.
pub fn delegation_authority<'a>(
    parent: &str,
    delegations: &'a Delegations,
    child: &'a DelegationRole,
) -> Result<Authority<'a>, TrustError> {
    let keys = keys_for(&delegations.keys, &child.keyids);
    for (id, key) in &keys {
        let Ok(parsed) = PublicKey::from_tuf(key) else {
            continue;
        };
        let Some(cert) = parsed.cert() else {
            continue;
        };
        let reason = if cert.not_before > cert.not_after {
            Some("certificate validity window is invalid".to_owned())
        } else if cert.sha1_signed {
            Some("certificate uses a SHA-1 signature algorithm".to_owned())
        } else if parsed.alg() == KeyAlg::Rsa && parsed.rsa_bits() < MIN_RSA_BITS {
            Some(format!(
                "RSA key of {} bits is shorter than {MIN_RSA_BITS}",
                parsed.rsa_bits()
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(TrustError::InvalidDelegation {
                parent: parent.to_owned(),
                name: child.name.clone(),
                reason: format!("key {id}: {reason}"),
            });
        }
    }
    Ok(Authority {
        role: &child.name,
        keys,
        threshold: child.threshold,
    })
}

/// `notary.MinRSABitSize`.
const MIN_RSA_BITS: usize = 2048;

/// Delegation names (`tuf/data/roles.go` `IsDelegation`, `targets.go`
/// `isValidTargetsStructure`): `^[-a-z0-9_/]+$`, shorter than 256 characters, and a direct
/// child of the role that lists them.
pub fn check_delegation_name(parent: &str, name: &str) -> Result<(), TrustError> {
    let invalid = |reason: &str| TrustError::InvalidDelegation {
        parent: parent.to_owned(),
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.len() >= 256 {
        return Err(invalid("name is 256 characters or longer"));
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_/".contains(&b))
    {
        return Err(invalid("name must match ^[-a-z0-9_/]+$"));
    }
    match name
        .strip_prefix(parent)
        .and_then(|rest| rest.strip_prefix('/'))
    {
        Some(leaf) if !leaf.is_empty() && !leaf.contains('/') => Ok(()),
        _ => Err(invalid("not a direct child of its parent")),
    }
}
