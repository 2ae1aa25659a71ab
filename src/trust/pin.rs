//! Which root keys may start trust in a repository (`trustpinning/trustpin.go`, `certs.go`).
//!
//! Root certificates must be X.509 (`ecdsa-x509`/`rsa-x509`) bundles holding exactly one leaf,
//! first, with CN = the GUN, valid now (notBefore may be a day ahead), not signed with SHA-1,
//! RSA ≥ 2048 bits (`parseAllCerts`, `validRootLeafCerts`; see [`super::certrules`]). Of
//! those, the pinning decides which may vouch for the root, in Notary's order: the exact
//! `certs[GUN]`, else the longest matching `prefix*` entry of `certs`, else a CA configured
//! for the longest matching GUN prefix (a path from the root certificate to that CA must
//! validate, [`super::capath`]), else trust on first use unless disabled. Once a root is
//! trusted it is itself the pin: later roots must be signed by it; configured pins apply
//! again only when rotating away from a trusted root that has expired (`bootstrapClient`).

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::capath::verify_ca_issued;
use super::certrules::{check_bundle, validate_certificate, CertFault};
use super::errors::TrustError;
use super::keys::PublicKey;
use super::wire::{Root, TufKey};

/// One pinned root certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertPin {
    /// The TUF keyid of the root's `*-x509` key, as it appears in root.json.
    KeyId(String),
    /// The DER of the root certificate itself (e.g. from `--root-cert FILE`).
    CertDer(Vec<u8>),
}

/// Trust pinning configuration (Notary's `trust_pinning`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustPinning {
    /// Keyed by an exact GUN or a `prefix*` wildcard.
    pub certs: BTreeMap<String, Vec<CertPin>>,
    /// Keyed by a GUN prefix; values are DER CA certificates.
    pub ca: BTreeMap<String, Vec<Vec<u8>>>,
    /// Refuse a repository seen for the first time unless `certs` or `ca` covers it.
    pub disable_tofu: bool,
}

impl TrustPinning {
    /// Reads every certificate from a PEM file's contents, as `CertPin::CertDer`.
    pub fn pins_from_pem(pem: &[u8]) -> Result<Vec<CertPin>, String> {
        let mut out = Vec::new();
        for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
            let block = block.map_err(|e| format!("PEM: {e}"))?;
            out.push(CertPin::CertDer(block.contents));
        }
        if out.is_empty() {
            return Err("no PEM certificate found".into());
        }
        Ok(out)
    }
}

impl TrustPinning {
    /// What decides first contact for `gun` under this pinning, as a short stable string: the
    /// entry that applies (`certs[..]`, `ca[..]`, TOFU or TOFU refused) and a hash of its
    /// certificates. Recorded with a trusted root, so a later edit of the pins that changes
    /// nothing for this GUN (another GUN's entry, a reordered file) is recognised as no change,
    /// and one that does change it makes the stored root face the new pins (see
    /// `Update::update_root`).
    pub fn fingerprint_for(&self, gun: &str) -> String {
        use sha2::{Digest as _, Sha256};
        let mut h = Sha256::new();
        let label = match checker(self, gun, true) {
            Ok(Checker::Certs(pins, name)) => {
                for pin in pins {
                    match pin {
                        CertPin::KeyId(id) => {
                            h.update(b"keyid:");
                            h.update(id.as_bytes());
                        }
                        CertPin::CertDer(der) => {
                            h.update(b"cert:");
                            h.update(der);
                        }
                    }
                    h.update([0]);
                }
                name
            }
            Ok(Checker::Ca(cas, name)) => {
                for der in cas {
                    h.update(der);
                    h.update([0]);
                }
                name
            }
            Ok(Checker::Tofu) => "tofu".to_owned(),
            Err(_) => "tofu-disabled".to_owned(),
        };
        format!("{label}:{}", hex::encode(&h.finalize()[..12]))
    }
}

/// How a root's certificates are judged.
enum Checker<'a> {
    Certs(&'a [CertPin], String),
    Ca(&'a [Vec<u8>], String),
    Tofu,
}

fn checker<'a>(
    pinning: &'a TrustPinning,
    gun: &str,
    first_bootstrap: bool,
) -> Result<Checker<'a>, TrustError> {
    if let Some(pins) = pinning.certs.get(gun) {
        return Ok(Checker::Certs(pins, format!("certs[{gun}]")));
    }
    let wildcard = pinning
        .certs
        .iter()
        .filter_map(|(k, v)| k.strip_suffix('*').map(|p| (p, k, v)))
        .filter(|(prefix, _, _)| gun.starts_with(prefix))
        .max_by_key(|(prefix, _, _)| prefix.len());
    if let Some((_, key, pins)) = wildcard {
        return Ok(Checker::Certs(pins, format!("certs[{key}]")));
    }
    let ca = pinning
        .ca
        .iter()
        .filter(|(prefix, _)| gun.starts_with(prefix.as_str()))
        .max_by_key(|(prefix, _)| prefix.len());
    if let Some((prefix, cas)) = ca {
        return Ok(Checker::Ca(cas, format!("ca[{prefix}]")));
    }
    // TOFU is refused only on first bootstrap: a cached root already pins (trustpin.go).
    if !first_bootstrap || !pinning.disable_tofu {
        return Ok(Checker::Tofu);
    }
    Err(TrustError::TofuDisabled {
        gun: gun.to_owned(),
    })
}

/// The root role's keys that are acceptable root certificates now (`validRootLeafCerts`).
/// Unacceptable ones are dropped; if none remain, the first reason is the error.
pub fn valid_root_certs<'r>(
    gun: &str,
    root: &'r Root,
    root_keyids: &'r [String],
    now: OffsetDateTime,
) -> Result<BTreeMap<&'r str, (&'r TufKey, PublicKey)>, TrustError> {
    let mut valid = BTreeMap::new();
    let mut first_reason = None;
    for keyid in root_keyids {
        let Some(tuf_key) = root.keys.get(keyid) else {
            continue;
        };
        match check_root_cert(gun, keyid, tuf_key, Some(now)) {
            Ok(key) => {
                valid.insert(keyid.as_str(), (tuf_key, key));
            }
            Err(e) => {
                first_reason.get_or_insert(e);
            }
        }
    }
    if valid.is_empty() {
        return Err(first_reason.unwrap_or(TrustError::malformed("root", "root role has no keys")));
    }
    Ok(valid)
}

fn check_root_cert(
    gun: &str,
    keyid: &str,
    tuf_key: &TufKey,
    now: Option<OffsetDateTime>,
) -> Result<PublicKey, TrustError> {
    let rejected = |reason: String| TrustError::RootCertRejected {
        keyid: keyid.to_owned(),
        reason,
    };
    let key = PublicKey::from_tuf(tuf_key).map_err(|e| rejected(e.to_string()))?;
    let cert = key
        .cert()
        .ok_or_else(|| rejected(format!("{} is not a certificate", key.keytype())))?;
    // Exactly one leaf, first (`parseAllCerts`, certs.go:262-300).
    check_bundle(cert).map_err(rejected)?;
    let cn = cert.common_name.clone().unwrap_or_default();
    if !cn_matches_gun(&cn, gun) {
        return Err(TrustError::RootCertWrongCn {
            keyid: keyid.to_owned(),
            expected: gun.to_owned(),
            got: cn,
        });
    }
    match validate_certificate(cert, now) {
        Ok(()) => Ok(key),
        Err(CertFault::NotValidNow) => Err(TrustError::RootCertExpired {
            keyid: keyid.to_owned(),
            cn,
            not_before: cert.not_before,
            not_after: cert.not_after,
        }),
        Err(fault) => Err(rejected(fault.to_string())),
    }
}

/// `MatchCNToGun`: the CN equals the GUN, or ends in `*` and the GUN starts with the rest.
pub fn cn_matches_gun(cn: &str, gun: &str) -> bool {
    match cn.strip_suffix('*') {
        Some(prefix) => gun.starts_with(prefix.trim_end_matches('*')),
        None => cn == gun,
    }
}

/// The previous root's keys that may vouch for its successor (`ValidateRoot` with a previous
/// root, certs.go:115-117: `validRootLeafCerts(..., false)`): its root-role certificates with
/// the bundle shape, CN, window, SHA-1 and RSA-size rules, but expired or not — the root we
/// trusted may have aged since.
pub fn previous_root_keys<'r>(
    gun: &str,
    root: &'r Root,
    root_keyids: &'r [String],
) -> BTreeMap<&'r str, &'r TufKey> {
    root_keyids
        .iter()
        .filter_map(|id| root.keys.get(id).map(|k| (id.as_str(), k)))
        .filter(|(id, k)| check_root_cert(gun, id, k, None).is_ok())
        .collect()
}

/// Filters valid root certificates down to those the pinning accepts. `first_bootstrap` is
/// true when no root for this GUN is trusted yet.
pub fn pinned_subset<'r>(
    pinning: &TrustPinning,
    gun: &str,
    valid: BTreeMap<&'r str, (&'r TufKey, PublicKey)>,
    first_bootstrap: bool,
    now: OffsetDateTime,
) -> Result<BTreeMap<&'r str, &'r TufKey>, TrustError> {
    let check = checker(pinning, gun, first_bootstrap)?;
    let mut out = BTreeMap::new();
    let mut reasons = Vec::new();
    for (keyid, (tuf_key, key)) in valid {
        let accepted = match &check {
            Checker::Tofu => Ok(()),
            Checker::Certs(pins, _) => {
                let hit = pins.iter().any(|pin| match pin {
                    CertPin::KeyId(id) => id == keyid,
                    CertPin::CertDer(der) => key
                        .cert()
                        .and_then(|c| c.chain_der.first())
                        .is_some_and(|leaf| leaf == der),
                });
                if hit {
                    Ok(())
                } else {
                    Err("not a pinned certificate".to_string())
                }
            }
            Checker::Ca(cas, _) => match key.cert() {
                Some(c) => verify_ca_issued(c, cas, now),
                None => Err("not a certificate".to_string()),
            },
        };
        match accepted {
            Ok(()) => {
                out.insert(keyid, tuf_key);
            }
            Err(reason) => reasons.push(format!("root certificate {keyid}: {reason}")),
        }
    }
    if out.is_empty() {
        let pin = match check {
            Checker::Certs(_, name) | Checker::Ca(_, name) => name,
            Checker::Tofu => "tofu".into(),
        };
        return Err(TrustError::PinMismatch {
            gun: gun.to_owned(),
            pin,
            reason: reasons.join("; "),
        });
    }
    Ok(out)
}
