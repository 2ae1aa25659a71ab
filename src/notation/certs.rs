//! The signing certificate chain (`x5c` / `x5chain`, leaf first, ending at its root).
//!
//! Integrity (notation-core-go `x509/codesigning_cert_validations.go`
//! `ValidateCodeSigningCertChain`; signature-specification.md "Certificate Requirements"):
//! the chain is a real path — validated by rustls-webpki from the leaf through the given
//! intermediates to the given root, at the signing time — and the Notary rules webpki, being
//! TLS-oriented, does not apply are added on top: the root is self-signed and no other
//! certificate is; every certificate was valid at the signing time (webpki skips the
//! anchor); a CA has basicConstraints critical cA=true, a critical keyUsage with keyCertSign,
//! and a pathLenConstraint that allows the CAs below it; the leaf is no CA, has a critical
//! keyUsage with digitalSignature and none of the other usages Notation forbids, an EKU (if
//! any) without serverAuth/clientAuth/emailProtection/timeStamping/OCSPSigning/any, and a key
//! Notation accepts.
//!
//! Authenticity (notation-core-go `signature/signer.go` `VerifyAuthenticity`): a certificate of
//! the validated chain is one of the trust store's.

use rustls_pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;
use webpki::{EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeIdIter};
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::{OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_KEY_USAGE};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::sigalg::alg_for_key;

/// webpki runs an EKU validator on the leaf and every intermediate; Notation's EKU rule is
/// for the leaf only and is applied by [`leaf_rules`], so this one accepts any EKU.
pub(crate) struct NotaryEkuChecked;

impl ExtendedKeyUsageValidator for NotaryEkuChecked {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        for id in iter {
            id?;
        }
        Ok(())
    }
}

fn subject(c: &X509Certificate<'_>) -> String {
    c.subject().to_string()
}

fn at(t: OffsetDateTime) -> x509_parser::time::ASN1Time {
    x509_parser::time::ASN1Time::from_timestamp(t.unix_timestamp())
        .unwrap_or(x509_parser::time::ASN1Time::from_timestamp(0).expect("epoch"))
}

fn valid_at(c: &X509Certificate<'_>, t: OffsetDateTime, what: &str) -> Result<(), String> {
    if c.validity().is_valid_at(at(t)) {
        Ok(())
    } else {
        Err(format!(
            "certificate {:?} was not valid at the {what} {t} (valid {} to {})",
            subject(c),
            c.validity().not_before,
            c.validity().not_after
        ))
    }
}

/// Whether every certificate of the chain is valid at `t`, or which is not.
pub fn all_valid_at(chain: &[Vec<u8>], t: OffsetDateTime, what: &str) -> Result<(), String> {
    for der in chain {
        let (_, c) = X509Certificate::from_der(der).map_err(|e| format!("bad certificate: {e}"))?;
        valid_at(&c, t, what)?;
    }
    Ok(())
}

fn self_signed(c: &X509Certificate<'_>) -> bool {
    c.subject().as_raw() == c.issuer().as_raw() && c.verify_signature(None).is_ok()
}

fn key_usage_critical(
    c: &X509Certificate<'_>,
) -> Result<x509_parser::extensions::KeyUsage, String> {
    let ext = c
        .get_extension_unique(&OID_X509_EXT_KEY_USAGE)
        .map_err(|e| format!("certificate {:?}: keyUsage: {e}", subject(c)))?
        .ok_or_else(|| {
            format!(
                "certificate {:?}: the keyUsage extension must be present",
                subject(c)
            )
        })?;
    if !ext.critical {
        return Err(format!(
            "certificate {:?}: the keyUsage extension must be critical",
            subject(c)
        ));
    }
    match ext.parsed_extension() {
        ParsedExtension::KeyUsage(ku) => Ok(*ku),
        _ => Err(format!(
            "certificate {:?}: keyUsage is malformed",
            subject(c)
        )),
    }
}

/// Leaf rules (codesigning_cert_validations.go `validateCodeSigningLeafCertificate`;
/// signature-specification.md "Leaf Certificates").
pub fn leaf_rules(c: &X509Certificate<'_>) -> Result<(), String> {
    let s = subject(c);
    if let Ok(Some(bc)) = c.basic_constraints() {
        if bc.value.ca {
            return Err(format!(
                "signing certificate {s:?} is a CA (basicConstraints cA=true)"
            ));
        }
    }
    let ku = key_usage_critical(c)?;
    if !ku.digital_signature() {
        return Err(format!(
            "signing certificate {s:?}: keyUsage must include digitalSignature"
        ));
    }
    let mut bad = Vec::new();
    for (set, name) in [
        (ku.key_encipherment(), "keyEncipherment"),
        (ku.data_encipherment(), "dataEncipherment"),
        (ku.key_agreement(), "keyAgreement"),
        (ku.key_cert_sign(), "keyCertSign"),
        (ku.crl_sign(), "cRLSign"),
        (ku.encipher_only(), "encipherOnly"),
        (ku.decipher_only(), "decipherOnly"),
    ] {
        if set {
            bad.push(name);
        }
    }
    if !bad.is_empty() {
        return Err(format!(
            "signing certificate {s:?}: keyUsage must be digitalSignature only, found {}",
            bad.join(", ")
        ));
    }
    // The EKU extension is optional; present, it must not allow another purpose (spec lists
    // anyExtendedKeyUsage, serverAuth, clientAuth, emailProtection, timeStamping; notation-core-go
    // adds OCSPSigning).
    match c.extended_key_usage() {
        Ok(None) => {}
        Ok(Some(eku)) => {
            let e = &eku.value;
            for (set, name) in [
                (e.any, "anyExtendedKeyUsage"),
                (e.server_auth, "serverAuth"),
                (e.client_auth, "clientAuth"),
                (e.email_protection, "emailProtection"),
                (e.time_stamping, "timeStamping"),
                (e.ocsp_signing, "OCSPSigning"),
            ] {
                if set {
                    return Err(format!(
                        "signing certificate {s:?}: extended key usage must not contain {name} (code signing only)"
                    ));
                }
            }
        }
        Err(e) => return Err(format!("signing certificate {s:?}: extendedKeyUsage: {e}")),
    }
    alg_for_key(c)
        .map(|_| ())
        .map_err(|e| format!("signing certificate {s:?}: {e}"))
}

/// CA rules (`validateCodeSigningCACertificate`; spec "Root and Intermediate CA
/// Certificates"). `below` is how many CAs sit between this one and the leaf.
fn ca_rules(c: &X509Certificate<'_>, below: u32) -> Result<(), String> {
    let s = subject(c);
    let bc = c
        .get_extension_unique(&OID_X509_EXT_BASIC_CONSTRAINTS)
        .map_err(|e| format!("certificate {s:?}: basicConstraints: {e}"))?;
    let bc = match bc {
        Some(ext) if ext.critical => match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) if bc.ca => bc.clone(),
            _ => {
                return Err(format!(
                    "certificate {s:?}: basicConstraints must have cA=true"
                ))
            }
        },
        _ => {
            return Err(format!(
                "certificate {s:?}: basicConstraints must be present, critical, with cA=true"
            ))
        }
    };
    if let Some(max) = bc.path_len_constraint {
        if max < below {
            return Err(format!(
                "certificate {s:?}: pathLenConstraint {max} but {below} CA certificate(s) below it"
            ));
        }
    }
    if !key_usage_critical(c)?.key_cert_sign() {
        return Err(format!(
            "certificate {s:?}: keyUsage must include keyCertSign"
        ));
    }
    Ok(())
}

fn unix(t: OffsetDateTime) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(t.unix_timestamp()).unwrap_or(0),
    ))
}

/// Integrity of the chain as an ordered, complete code-signing path at `signing_time`.
pub fn validate_chain(chain: &[Vec<u8>], signing_time: OffsetDateTime) -> Result<(), String> {
    let parsed = chain
        .iter()
        .enumerate()
        .map(|(i, der)| {
            X509Certificate::from_der(der)
                .map(|(_, c)| c)
                .map_err(|e| format!("certificate #{} of the chain is not X.509: {e}", i + 1))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let leaf = parsed.first().ok_or("the certificate chain is empty")?;
    for c in &parsed {
        valid_at(c, signing_time, "signing time")?;
    }
    if parsed.len() == 1 {
        // A lone certificate must be a self-signed signing certificate.
        if !self_signed(leaf) {
            return Err(format!(
                "the chain is the single certificate {:?}, which is not validly self-signed",
                subject(leaf)
            ));
        }
        return leaf_rules(leaf);
    }
    let root = parsed.last().expect("len > 1");
    if !self_signed(root) {
        return Err(format!(
            "the chain must end with a self-signed root; {:?} is not (or its signature algorithm is unsupported)",
            subject(root)
        ));
    }
    for c in &parsed[..parsed.len() - 1] {
        if c.subject().as_raw() == c.issuer().as_raw() {
            return Err(format!(
                "certificate {:?} is self-signed but is not the chain's root",
                subject(c)
            ));
        }
    }
    leaf_rules(leaf)?;
    for (i, c) in parsed.iter().enumerate().skip(1) {
        ca_rules(c, (i - 1) as u32)?;
    }
    // The path itself (signatures, issuer names, CA use, name constraints, validity of
    // leaf and intermediates) is webpki's.
    let anchor_der = CertificateDer::from(chain[chain.len() - 1].as_slice());
    let anchor = webpki::anchor_from_trusted_cert(&anchor_der)
        .map_err(|e| format!("root {:?}: {e}", subject(root)))?;
    let intermediates: Vec<CertificateDer<'_>> = chain[1..chain.len() - 1]
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let leaf_der = CertificateDer::from(chain[0].as_slice());
    let ee = EndEntityCert::try_from(&leaf_der).map_err(|e| format!("signing certificate: {e}"))?;
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &intermediates,
        unix(signing_time),
        NotaryEkuChecked,
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| format!("the certificate chain is not a valid path from the signing certificate to its root: {e}"))
}

/// Authenticity: one certificate of the (already validated) chain is in `trusted`.
pub fn trusted_member<'a>(chain: &[Vec<u8>], trusted: &'a [Vec<u8>]) -> Option<&'a [u8]> {
    trusted
        .iter()
        .find(|t| chain.iter().any(|c| c == *t))
        .map(Vec::as_slice)
}
