//! CA trust pinning: was a root certificate issued by a pinned CA? Notary loads the pinned CAs
//! (`trustpinning/trustpin.go` `NewTrustPinChecker`, trustpin.go:61-85) and asks Go's
//! `x509.Verify` with the bundle's valid CA certificates as intermediates and no explicit key
//! usage (`caCheck`, trustpin.go:106-120). The path here is built and validated by
//! rustls-webpki, never by hand: signatures, validity of every certificate on the path,
//! basicConstraints (an issuer must be a CA), pathLen, name constraints, and the extended key
//! usage of every certificate.
//!
//! Where webpki and Go's `x509.Verify` differ, this module closes the gap toward Go:
//! - Go checks the extended key usage of the *root* too (`checkChainForKeyUsage` walks the
//!   whole chain); webpki ignores a trust anchor's extensions. A pinned CA whose EKU excludes
//!   serverAuth is therefore dropped here.
//! - Go honours the root's pathLenConstraint (`isValid`, "TooManyIntermediates"); webpki does
//!   not keep it for anchors. It is checked on the candidate path below.
//! - Go's `ExtKeyUsageAny` satisfies any usage; webpki's `KeyUsage` knows only the OID it was
//!   given. `ServerAuthOrAny` accepts either, on the leaf and on intermediates.
//!   webpki runs the validator on every path certificate below the anchor; with the single
//!   usage Notary requests, Go's "cross out usages down the chain" reduces to the same
//!   per-certificate rule (commit cb2177d made the leaf rule; it now covers the whole chain).
//! - The pinned CA's validity: webpki does not check anchors; Go does (without leeway).
//!
//! Remaining differences are refusals only: webpki refuses an empty EKU extension (Go treats
//! it as unrestricted), every path under a directoryName name constraint and URI SANs under
//! a URI name constraint (Go ignores non-critical constraint forms it does not handle), X.509
//! v1 leaves and intermediates, and ECDSA P-521 signatures.

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use time::OffsetDateTime;
use webpki::{
    EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeId, KeyPurposeIdIter, KeyUsage,
    RequiredEkuNotFoundContext, VerifiedPath,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::certrules::{valid_intermediates, validate_certificate};
use super::keys::CertInfo;

/// id-kp-serverAuth (1.3.6.1.5.5.7.3.1), DER contents.
const EKU_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
/// anyExtendedKeyUsage (2.5.29.37.0), DER contents.
const EKU_ANY: &[u8] = &[0x55, 0x1d, 0x25, 0x00];

/// Notary calls `x509.Verify` without `KeyUsages`, which means `ExtKeyUsageServerAuth`: a
/// certificate carrying an EKU extension must list serverAuth or anyExtendedKeyUsage; one
/// without the extension is unrestricted (Go `checkChainForKeyUsage`).
struct ServerAuthOrAny;

impl ExtendedKeyUsageValidator for ServerAuthOrAny {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let mut present = Vec::new();
        for id in iter {
            let id = id?;
            if id == KeyPurposeId::new(EKU_SERVER_AUTH) || id == KeyPurposeId::new(EKU_ANY) {
                return Ok(());
            }
            present.push(id.to_decoded_oid());
        }
        if present.is_empty() {
            return Ok(());
        }
        Err(webpki::Error::RequiredEkuNotFoundContext(
            RequiredEkuNotFoundContext {
                required: KeyUsage::server_auth(),
                present,
            },
        ))
    }
}

/// The same rule for a pinned CA certificate, which webpki does not look at.
fn server_auth_allowed(cert: &X509Certificate) -> bool {
    match cert.extended_key_usage() {
        Ok(Some(eku)) => eku.value.any || eku.value.server_auth,
        Ok(None) => true,
        // A malformed extension restricts nothing we can read: refuse.
        Err(_) => false,
    }
}

/// A pinned CA usable as a trust anchor, with the pathLenConstraint webpki would forget.
struct Anchor {
    anchor: TrustAnchor<'static>,
    path_len: Option<u32>,
}

/// The pinned CAs that may anchor a path now, or why none may. Notary drops a CA that fails
/// `ValidateCertificate(ca, true)` (SHA-1, RSA < 2048, expired) and errors when none is left
/// ("invalid CA certs provided"); `x509.Verify` then also wants it valid now, without the
/// notBefore leeway, and allowing serverAuth.
fn usable_anchors(cas: &[Vec<u8>], now: OffsetDateTime) -> Result<Vec<Anchor>, String> {
    let mut anchors = Vec::new();
    let mut reasons = Vec::new();
    for (i, der) in cas.iter().enumerate() {
        let usable = (|| {
            let info = CertInfo::from_der(der).map_err(|e| e.to_string())?;
            validate_certificate(&info, Some(now)).map_err(|e| e.to_string())?;
            if now < info.not_before || now > info.not_after {
                return Err("not valid now".to_string());
            }
            let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
            if !server_auth_allowed(&cert) {
                return Err("its extended key usage excludes serverAuth".to_string());
            }
            let path_len = match cert.basic_constraints() {
                Ok(bc) => bc.and_then(|bc| bc.value.path_len_constraint),
                Err(e) => return Err(format!("basicConstraints: {e}")),
            };
            let anchor = webpki::anchor_from_trusted_cert(&CertificateDer::from(der.as_slice()))
                .map_err(|e| e.to_string())?
                .to_owned();
            Ok(Anchor { anchor, path_len })
        })();
        match usable {
            Ok(a) => anchors.push(a),
            Err(reason) => reasons.push(format!("CA #{}: {reason}", i + 1)),
        }
    }
    if anchors.is_empty() {
        return Err(format!(
            "no usable pinned CA certificate ({})",
            reasons.join("; ")
        ));
    }
    Ok(anchors)
}

/// Whether one of `cas` issued the root certificate `leaf`, directly or through the valid CA
/// certificates of its own bundle. `Err` says why not.
pub fn verify_ca_issued(
    leaf: &CertInfo,
    cas: &[Vec<u8>],
    now: OffsetDateTime,
) -> Result<(), String> {
    let anchors = usable_anchors(cas, now)?;
    let trust: Vec<TrustAnchor<'static>> = anchors.iter().map(|a| a.anchor.clone()).collect();
    let intermediates: Vec<CertificateDer<'_>> = valid_intermediates(leaf, now)
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let leaf_der = leaf
        .chain_der
        .first()
        .map(|d| CertificateDer::from(d.as_slice()))
        .ok_or("empty certificate bundle")?;
    let ee = EndEntityCert::try_from(&leaf_der).map_err(|e| format!("leaf: {e}"))?;
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(now.unix_timestamp()).unwrap_or(0),
    ));
    // The anchor's pathLenConstraint bounds the intermediates below it (Go `isValid`). A
    // rejected candidate lets webpki keep searching for another path.
    let anchor_path_len = |path: &VerifiedPath<'_>| {
        let anchor = path.anchor();
        let limit = anchors
            .iter()
            .find(|a| {
                a.anchor.subject == anchor.subject
                    && a.anchor.subject_public_key_info == anchor.subject_public_key_info
            })
            .and_then(|a| a.path_len);
        match limit {
            Some(max) if path.intermediate_certificates().count() > max as usize => {
                Err(webpki::Error::PathLenConstraintViolated)
            }
            _ => Ok(()),
        }
    };
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &trust,
        &intermediates,
        time,
        ServerAuthOrAny,
        None,
        Some(&anchor_path_len),
    )
    .map(|_| ())
    .map_err(|e| format!("no valid path to a pinned CA: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};

    fn cert(
        cn: &str,
        ca: bool,
        issuer: Option<(&rcgen::Certificate, &KeyPair)>,
    ) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        if ca {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        let c = match issuer {
            None => p.self_signed(&key).unwrap(),
            Some((ic, ik)) => p.signed_by(&key, ic, ik).unwrap(),
        };
        (c, key)
    }

    fn bundle(certs: &[&rcgen::Certificate]) -> CertInfo {
        let mut info = CertInfo::from_der(certs[0].der()).unwrap();
        info.chain_der = certs.iter().map(|c| c.der().to_vec()).collect();
        info
    }

    /// Defence in depth behind the one-leaf bundle rule: even handed a non-CA issuer, the
    /// path validator never uses it (D1), while a CA intermediate works.
    #[test]
    fn a_non_ca_issuer_never_completes_a_path() {
        let now = OffsetDateTime::now_utc();
        let (root, root_key) = cert("Pinned CA", true, None);
        let (leaf, leaf_key) = cert("registry.example/other", false, Some((&root, &root_key)));
        let (forged, _) = cert("registry.example/victim", false, Some((&leaf, &leaf_key)));
        let cas = [root.der().to_vec()];
        let err = verify_ca_issued(&bundle(&[&forged, &leaf]), &cas, now).unwrap_err();
        assert!(err.contains("UnknownIssuer"), "{err}");

        let (inter, inter_key) = cert("Intermediate", true, Some((&root, &root_key)));
        let (good, _) = cert("registry.example/victim", false, Some((&inter, &inter_key)));
        verify_ca_issued(&bundle(&[&good, &inter]), &cas, now).unwrap();
    }

    fn fixture_der(file: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/keys")
            .join(file);
        let pem = std::fs::read(path).unwrap();
        let block = x509_parser::pem::Pem::iter_from_buffer(&pem)
            .next()
            .unwrap();
        block.unwrap().contents
    }

    /// Pinned CAs pass `ValidateCertificate(ca, true)` first (trustpin.go:70-76): no SHA-1,
    /// RSA ≥ 2048, unexpired; with none left the pin vouches for nothing.
    #[test]
    fn weak_or_expired_pinned_cas_are_unusable() {
        let now = OffsetDateTime::now_utc();
        let reason = |der: Vec<u8>| usable_anchors(&[der], now).err().unwrap();
        assert!(reason(fixture_der("rsa2048-sha1.crt")).contains("SHA-1"));
        assert!(reason(fixture_der("rsa1024.crt")).contains("1024 bits"));
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.not_before = now - time::Duration::days(30);
        p.not_after = now - time::Duration::days(1);
        let expired = p.self_signed(&key).unwrap();
        assert!(reason(expired.der().to_vec()).contains("not valid now"));
        // The same RSA key in a SHA-256 certificate is usable.
        assert_eq!(
            usable_anchors(&[fixture_der("rsa2048.crt")], now)
                .unwrap()
                .len(),
            1
        );
    }
}
