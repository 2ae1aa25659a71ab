//! Which root keys may start trust in a repository (`trustpinning/trustpin.go`, `certs.go`).
//!
//! Root certificates must be X.509 (`ecdsa-x509`/`rsa-x509`), valid now, with CN = the GUN, not
//! signed with SHA-1, RSA ≥ 2048 bits (`validRootLeafCerts`). Of those, the pinning decides
//! which may vouch for the root, in Notary's order: the exact `certs[GUN]`, else the longest
//! matching `prefix*` entry of `certs`, else a CA configured for the longest matching GUN
//! prefix (the CA must have issued the root certificate), else trust on first use unless
//! disabled. Once a root is trusted it is itself the pin: later roots must be signed by it.

use std::collections::BTreeMap;

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::errors::TrustError;
use super::keys::{KeyAlg, PublicKey};
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
        match check_root_cert(gun, keyid, tuf_key, now) {
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
    now: OffsetDateTime,
) -> Result<PublicKey, TrustError> {
    let rejected = |reason: String| TrustError::RootCertRejected {
        keyid: keyid.to_owned(),
        reason,
    };
    let key = PublicKey::from_tuf(tuf_key).map_err(|e| rejected(e.to_string()))?;
    let cert = key
        .cert()
        .ok_or_else(|| rejected(format!("{} is not a certificate", key.keytype())))?;
    let cn = cert.common_name.clone().unwrap_or_default();
    if !cn_matches_gun(&cn, gun) {
        return Err(TrustError::RootCertWrongCn {
            keyid: keyid.to_owned(),
            expected: gun.to_owned(),
            got: cn,
        });
    }
    if now < cert.not_before || now > cert.not_after {
        return Err(TrustError::RootCertExpired {
            keyid: keyid.to_owned(),
            not_before: cert.not_before,
            not_after: cert.not_after,
        });
    }
    // The bundle must start with its one leaf (`parseAllCerts`).
    if cert.is_ca {
        return Err(rejected("the first certificate is a CA, not a leaf".into()));
    }
    if cert.sha1_signed {
        return Err(rejected("signed with SHA-1".into()));
    }
    if key.alg() == KeyAlg::Rsa && key.rsa_bits() < 2048 {
        return Err(rejected(format!("RSA key of {} bits", key.rsa_bits())));
    }
    Ok(key)
}

/// `MatchCNToGun`: the CN equals the GUN, or ends in `*` and the GUN starts with the rest.
pub fn cn_matches_gun(cn: &str, gun: &str) -> bool {
    match cn.strip_suffix('*') {
        Some(prefix) => gun.starts_with(prefix.trim_end_matches('*')),
        None => cn == gun,
    }
}

/// The previous root's keys that may vouch for its successor (`ValidateRoot` with a previous
/// root): its root-role certificates whose CN matches the GUN, expired or not — the root we
/// trusted may have aged since.
pub fn previous_root_keys<'r>(
    gun: &str,
    root: &'r Root,
    root_keyids: &'r [String],
) -> BTreeMap<&'r str, &'r TufKey> {
    root_keyids
        .iter()
        .filter_map(|id| root.keys.get(id).map(|k| (id.as_str(), k)))
        .filter(|(_, k)| {
            PublicKey::from_tuf(k).ok().is_some_and(|key| {
                key.cert().is_some_and(|c| {
                    !c.is_ca && cn_matches_gun(c.common_name.as_deref().unwrap_or_default(), gun)
                })
            })
        })
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
    for (keyid, (tuf_key, key)) in valid {
        let accepted = match &check {
            Checker::Tofu => true,
            Checker::Certs(pins, _) => pins.iter().any(|pin| match pin {
                CertPin::KeyId(id) => id == keyid,
                CertPin::CertDer(der) => key
                    .cert()
                    .and_then(|c| c.chain_der.first())
                    .is_some_and(|leaf| leaf == der),
            }),
            Checker::Ca(cas, _) => key
                .cert()
                .is_some_and(|c| issued_by(&c.chain_der, cas, now)),
        };
        if accepted {
            out.insert(keyid, tuf_key);
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
        });
    }
    Ok(out)
}

/// Notary verifies a CA-issued root chain with Go's `x509.Verify` and no explicit key usages
/// (`trustpinning/certs.go`), which means `ExtKeyUsageServerAuth`: a certificate on the path
/// that carries an extended-key-usage extension must allow serverAuth (or any usage). One
/// without the extension is unrestricted.
fn server_auth_allowed(cert: &X509Certificate) -> bool {
    match cert.extended_key_usage() {
        Ok(Some(eku)) => eku.value.any || eku.value.server_auth,
        Ok(None) => true,
        // A malformed extension restricts nothing we can read: refuse.
        Err(_) => false,
    }
}

/// Whether one of `cas` issued the leaf of `chain`, directly or through the intermediates that
/// follow the leaf in the same PEM bundle; every certificate on the path must be valid now.
fn issued_by(chain: &[Vec<u8>], cas: &[Vec<u8>], now: OffsetDateTime) -> bool {
    fn parse(der: &[u8]) -> Option<X509Certificate<'_>> {
        X509Certificate::from_der(der).ok().map(|(_, c)| c)
    }
    let Some(ca_certs) = cas.iter().map(|d| parse(d)).collect::<Option<Vec<_>>>() else {
        return false;
    };
    let Some(certs) = chain.iter().map(|d| parse(d)).collect::<Option<Vec<_>>>() else {
        return false;
    };
    let valid_now = |c: &X509Certificate| {
        let t = now.unix_timestamp();
        c.validity().not_before.timestamp() <= t && t <= c.validity().not_after.timestamp()
    };
    let signs = |issuer: &X509Certificate, cert: &X509Certificate| {
        issuer.subject() == cert.issuer()
            && valid_now(issuer)
            && cert.verify_signature(Some(issuer.public_key())).is_ok()
    };
    let Some(mut current) = certs.first() else {
        return false;
    };
    let mut used = vec![false; certs.len()];
    // Each step climbs one intermediate; the bundle bounds the path length.
    for _ in 0..certs.len() {
        if !valid_now(current) || !server_auth_allowed(current) {
            return false;
        }
        if ca_certs.iter().any(|ca| signs(ca, current)) {
            return true;
        }
        let next = certs
            .iter()
            .enumerate()
            .skip(1)
            .find(|(i, c)| !used[*i] && signs(c, current));
        match next {
            Some((i, c)) => {
                used[i] = true;
                current = c;
            }
            None => return false,
        }
    }
    false
}
