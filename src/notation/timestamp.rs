//! RFC 3161 timestamp countersignatures (`io.cncf.notary.timestampSignature`), verified as
//! notation-core-go `internal/timestamp/timestamp.go` and tspclient-go (`token.go`,
//! `internal/cms/signed.go`) verify them, against the statement's `tsa` trust stores:
//!
//! - the token is a DER CMS `ContentInfo` of `SignedData` (RFC 5652) whose encapsulated
//!   content is an RFC 3161 `TSTInfo` (`id-ct-TSTInfo`), version 1;
//! - `messageImprint` is the hash (SHA-256/384/512) of the envelope's signature value;
//! - a `SignerInfo` whose certificate (found by its `sid` among the token's certificates)
//!   has signed attributes with `contentType` = `id-ct-TSTInfo`, `messageDigest` = the hash of
//!   the `TSTInfo` under the SignerInfo's digest algorithm, and `signingCertificateV2`
//!   (RFC 5816) whose first `certHash` is that certificate's hash; the signature over the DER
//!   `SET OF` signed attributes verifies with that certificate's key;
//! - that certificate is a TSA certificate (RFC 3161 §2.3: one critical extended key usage,
//!   `id-kp-timeStamping` only; not a CA; digitalSignature if keyUsage is present), and
//!   rustls-webpki builds a path from it through the token's certificates to a `tsa` store
//!   root at `genTime`.
//!
//! Parsing is RustCrypto `cms` and `x509-tsp` (DER only: a BER token is refused, where
//! tspclient-go would convert it); signatures are webpki's (ring). Not done, and documented:
//! the signingCertificate (v1, SHA-1) attribute is not accepted, and the TSA chain's
//! revocation is not checked.

use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use der::asn1::{ObjectIdentifier as Oid, OctetString};
use der::{Decode, Encode};
use rustls_pki_types::{CertificateDer, UnixTime};
use sha2::Digest as _;
use time::OffsetDateTime;
use webpki::EndEntityCert;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_tsp::TstInfo;

use super::MAX_CHAIN_CERTS;

const ID_SIGNED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.2");
const ID_CT_TST_INFO: Oid = Oid::new_unwrap("1.2.840.113549.1.9.16.1.4");
const ID_CONTENT_TYPE: Oid = Oid::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: Oid = Oid::new_unwrap("1.2.840.113549.1.9.4");
const ID_SIGNING_CERTIFICATE_V2: Oid = Oid::new_unwrap("1.2.840.113549.1.9.16.2.47");
const SHA256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.3");
const RSA_ENCRYPTION: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
const SHA256_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.13");
const ECDSA_WITH_SHA256: Oid = Oid::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_WITH_SHA384: Oid = Oid::new_unwrap("1.2.840.10045.4.3.3");
/// Largest token accepted (the GlobalSign token of the notation-go vectors is ~6 KiB).
const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// RFC 5035 `SigningCertificateV2 ::= SEQUENCE { certs SEQUENCE OF ESSCertIDv2, policies
/// SEQUENCE OF PolicyInformation OPTIONAL }`.
#[derive(der::Sequence)]
struct SigningCertificateV2 {
    certs: Vec<EssCertIdV2>,
    /// Decoded for the structure's sake; tspclient-go does not use it either.
    #[allow(dead_code)]
    #[asn1(optional = "true")]
    policies: Option<der::Any>,
}

/// `ESSCertIDv2 ::= SEQUENCE { hashAlgorithm AlgorithmIdentifier DEFAULT id-sha256,
/// certHash OCTET STRING, issuerSerial IssuerSerial OPTIONAL }`.
#[derive(der::Sequence)]
struct EssCertIdV2 {
    #[asn1(optional = "true")]
    hash_algorithm: Option<AlgorithmIdentifierOwned>,
    cert_hash: OctetString,
    /// Not needed: the certificate is found by the SignerInfo's `sid`, and `certHash` binds it.
    #[allow(dead_code)]
    #[asn1(optional = "true")]
    issuer_serial: Option<der::Any>,
}

/// A verified timestamp: `genTime` and its accuracy, and who vouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timestamp {
    pub gen_time: OffsetDateTime,
    pub accuracy: time::Duration,
    pub tsa_subject: String,
}

impl Timestamp {
    /// Whether `[genTime - accuracy, genTime + accuracy]` lies within `[from, to]`
    /// (timestamp.go: `BoundedAfter(cert.NotBefore)`, `BoundedBefore(cert.NotAfter)`).
    pub fn within(&self, from: OffsetDateTime, to: OffsetDateTime) -> bool {
        self.gen_time - self.accuracy >= from && self.gen_time + self.accuracy <= to
    }
}

fn hash(alg: &Oid, data: &[u8]) -> Result<Vec<u8>, String> {
    Ok(match *alg {
        SHA256 => sha2::Sha256::digest(data).to_vec(),
        SHA384 => sha2::Sha384::digest(data).to_vec(),
        SHA512 => sha2::Sha512::digest(data).to_vec(),
        other => return Err(format!("unsupported hash algorithm {other}")),
    })
}

fn unix(t: OffsetDateTime) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(t.unix_timestamp()).unwrap_or(0),
    ))
}

/// Verifies `token` as the countersignature of `signature` (the envelope's signature value)
/// by a TSA chaining to one of `tsa_roots` (DER).
pub fn verify(token: &[u8], signature: &[u8], tsa_roots: &[Vec<u8>]) -> Result<Timestamp, String> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(format!(
            "the timestamp token is {} bytes, more than the {MAX_TOKEN_BYTES} accepted",
            token.len()
        ));
    }
    let ci = ContentInfo::from_der(token)
        .map_err(|e| format!("the timestamp token is not a DER CMS ContentInfo: {e}"))?;
    if ci.content_type != ID_SIGNED_DATA {
        return Err(format!(
            "the timestamp token's content type is {}, not signedData",
            ci.content_type
        ));
    }
    let sd: SignedData = ci
        .content
        .decode_as()
        .map_err(|e| format!("the timestamp token's SignedData is malformed: {e}"))?;
    if sd.encap_content_info.econtent_type != ID_CT_TST_INFO {
        return Err(format!(
            "the timestamp token encapsulates {}, not id-ct-TSTInfo",
            sd.encap_content_info.econtent_type
        ));
    }
    let tst_der = sd
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or("the timestamp token has no TSTInfo content")?
        .decode_as::<OctetString>()
        .map_err(|e| format!("the timestamp token's content is not an OCTET STRING: {e}"))?;
    let tst_der = tst_der.as_bytes();
    // tstinfo Validate: version 1 (the type admits only v1), the imprint is this signature.
    let tst = TstInfo::from_der(tst_der).map_err(|e| format!("TSTInfo is malformed: {e}"))?;
    let imprint_alg = tst.message_imprint.hash_algorithm.oid;
    let expected = hash(&imprint_alg, signature).map_err(|e| format!("messageImprint: {e}"))?;
    if tst.message_imprint.hashed_message.as_bytes() != expected.as_slice() {
        return Err("the timestamp's messageImprint is not the hash of this envelope's signature (a countersignature of another signature)".into());
    }
    let gen_time =
        OffsetDateTime::from_unix_timestamp(tst.gen_time.to_unix_duration().as_secs() as i64)
            .map_err(|e| format!("genTime: {e}"))?;
    let accuracy = tst
        .accuracy
        .as_ref()
        .map(|a| {
            time::Duration::seconds(a.seconds.unwrap_or(0).min(i64::MAX as u64) as i64)
                + time::Duration::milliseconds(a.millis.unwrap_or(0).into())
                + time::Duration::microseconds(a.micros.unwrap_or(0).into())
        })
        .unwrap_or_default();
    if accuracy.is_negative() {
        return Err("the timestamp's accuracy is negative".into());
    }

    let certs: Vec<Vec<u8>> = sd
        .certificates
        .as_ref()
        .map(|set| {
            set.0
                .iter()
                .filter_map(|c| match c {
                    cms::cert::CertificateChoices::Certificate(c) => Some(c.to_der()),
                    _ => None,
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(|e| format!("the timestamp token's certificates: {e}"))?
        .unwrap_or_default();
    if certs.len() > MAX_CHAIN_CERTS {
        return Err(format!(
            "the timestamp token carries {} certificates, more than {MAX_CHAIN_CERTS}",
            certs.len()
        ));
    }
    // token.go Verify: the first SignerInfo that verifies wins.
    let mut why = Vec::new();
    for si in sd.signer_infos.0.iter() {
        match signer(si, tst_der, &certs, tsa_roots, gen_time) {
            Ok(tsa_subject) => {
                return Ok(Timestamp {
                    gen_time,
                    accuracy,
                    tsa_subject,
                })
            }
            Err(e) => why.push(e),
        }
    }
    if why.is_empty() {
        return Err("the timestamp token has no SignerInfo".into());
    }
    Err(why.join("; "))
}

fn matches_sid(sid: &SignerIdentifier, c: &X509Certificate<'_>) -> bool {
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(ias) => {
            ias.issuer.to_der().ok().as_deref() == Some(c.issuer().as_raw())
                && ias.serial_number.as_bytes() == c.raw_serial()
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => c.extensions().iter().any(|e| {
            matches!(e.parsed_extension(),
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k)
                    if k.0 == ski.0.as_bytes())
        }),
    }
}

/// The one value of the signed attribute `oid`.
fn attribute<'a>(si: &'a SignerInfo, oid: Oid, name: &str) -> Result<&'a der::Any, String> {
    let attrs = si
        .signed_attrs
        .as_ref()
        .ok_or("the SignerInfo has no signed attributes (RFC 5652 requires them for TSTInfo)")?;
    let mut found = attrs.iter().filter(|a| a.oid == oid);
    let a = found
        .next()
        .ok_or_else(|| format!("the signed attribute {name} is missing"))?;
    if found.next().is_some() || a.values.len() != 1 {
        return Err(format!(
            "the signed attribute {name} must occur once with one value"
        ));
    }
    Ok(a.values.get(0).expect("len 1"))
}

fn webpki_algs(
    sig_alg: &Oid,
    digest_alg: &Oid,
) -> Result<Vec<&'static dyn rustls_pki_types::SignatureVerificationAlgorithm>, String> {
    use webpki::ring as w;
    Ok(match (*sig_alg, *digest_alg) {
        (SHA256_WITH_RSA, _) | (RSA_ENCRYPTION, SHA256) => vec![w::RSA_PKCS1_2048_8192_SHA256],
        (SHA384_WITH_RSA, _) | (RSA_ENCRYPTION, SHA384) => vec![w::RSA_PKCS1_2048_8192_SHA384],
        (SHA512_WITH_RSA, _) | (RSA_ENCRYPTION, SHA512) => vec![w::RSA_PKCS1_2048_8192_SHA512],
        (ECDSA_WITH_SHA256, _) => vec![w::ECDSA_P256_SHA256, w::ECDSA_P384_SHA256],
        (ECDSA_WITH_SHA384, _) => vec![w::ECDSA_P384_SHA384, w::ECDSA_P256_SHA384],
        (s, d) => {
            return Err(format!(
                "unsupported SignerInfo signature algorithm {s} (digest {d})"
            ))
        }
    })
}

/// One SignerInfo: its certificate, attributes, signature, TSA rules and chain. Returns the
/// TSA certificate's subject.
fn signer(
    si: &SignerInfo,
    tst_der: &[u8],
    certs: &[Vec<u8>],
    tsa_roots: &[Vec<u8>],
    gen_time: OffsetDateTime,
) -> Result<String, String> {
    let (leaf_der, leaf) = certs
        .iter()
        .filter_map(|d| X509Certificate::from_der(d).ok().map(|(_, c)| (d, c)))
        .find(|(_, c)| matches_sid(&si.sid, c))
        .ok_or("the TSA's signing certificate is not in the timestamp token")?;
    let subject = leaf.subject().to_string();
    // signed.go verifySignedAttributes: contentType and messageDigest.
    let ct = attribute(si, ID_CONTENT_TYPE, "contentType")?
        .decode_as::<Oid>()
        .map_err(|e| format!("contentType: {e}"))?;
    if ct != ID_CT_TST_INFO {
        return Err(format!("the signed contentType is {ct}, not id-ct-TSTInfo"));
    }
    let md = attribute(si, ID_MESSAGE_DIGEST, "messageDigest")?
        .decode_as::<OctetString>()
        .map_err(|e| format!("messageDigest: {e}"))?;
    if md.as_bytes() != hash(&si.digest_alg.oid, tst_der)?.as_slice() {
        return Err("the signed messageDigest is not the hash of the TSTInfo".into());
    }
    // token.go GetSigningCertificate: signingCertificateV2 binds the certificate.
    let scv2 = attribute(si, ID_SIGNING_CERTIFICATE_V2, "signingCertificateV2")?
        .decode_as::<SigningCertificateV2>()
        .map_err(|e| format!("signingCertificateV2: {e}"))?;
    let first = scv2
        .certs
        .first()
        .ok_or("signingCertificateV2 lists no certificate")?;
    let cert_hash_alg = first
        .hash_algorithm
        .as_ref()
        .map(|a| a.oid)
        .unwrap_or(SHA256);
    if first.cert_hash.as_bytes() != hash(&cert_hash_alg, leaf_der)?.as_slice() {
        return Err(format!(
            "signingCertificateV2 does not name the certificate {subject:?} that signed"
        ));
    }
    let attrs_der = si
        .signed_attrs
        .as_ref()
        .expect("checked above")
        .to_der()
        .map_err(|e| format!("signed attributes: {e}"))?;
    let leaf_cd = CertificateDer::from(leaf_der.as_slice());
    let ee = EndEntityCert::try_from(&leaf_cd)
        .map_err(|e| format!("TSA certificate {subject:?}: {e}"))?;
    let algs = webpki_algs(&si.signature_algorithm.oid, &si.digest_alg.oid)?;
    if !algs.iter().any(|a| {
        ee.verify_signature(*a, &attrs_der, si.signature.as_bytes())
            .is_ok()
    }) {
        return Err(format!(
            "the timestamp signature does not verify with the key of {subject:?}"
        ));
    }
    tsa_leaf_rules(&leaf)?;
    let anchors = tsa_roots
        .iter()
        .map(|r| {
            webpki::anchor_from_trusted_cert(&CertificateDer::from(r.as_slice()))
                .map(|a| a.to_owned())
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tsa trust store: {e}"))?;
    let intermediates: Vec<CertificateDer<'_>> = certs
        .iter()
        .filter(|c| *c != leaf_der)
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &intermediates,
        unix(gen_time),
        super::certs::NotaryEkuChecked,
        None,
        None,
    )
    .map_err(|e| {
        format!("the TSA certificate {subject:?} does not chain to the statement's tsa trust stores at genTime {gen_time}: {e}")
    })?;
    Ok(subject)
}

/// RFC 3161 §2.3 and notation-core-go `x509/timestamp_cert_validations.go`.
fn tsa_leaf_rules(c: &X509Certificate<'_>) -> Result<(), String> {
    let s = c.subject().to_string();
    if c.is_ca() {
        return Err(format!("TSA certificate {s:?} is a CA"));
    }
    let eku = c
        .extended_key_usage()
        .map_err(|e| format!("TSA certificate {s:?}: extendedKeyUsage: {e}"))?
        .ok_or_else(|| {
            format!("TSA certificate {s:?} has no extended key usage (timeStamping required)")
        })?;
    let e = &eku.value;
    let only_timestamping = e.time_stamping
        && !(e.any
            || e.server_auth
            || e.client_auth
            || e.code_signing
            || e.email_protection
            || e.ocsp_signing)
        && e.other.is_empty();
    if !only_timestamping || !eku.critical {
        return Err(format!(
            "TSA certificate {s:?}: the extended key usage must be critical and timeStamping only"
        ));
    }
    if let Ok(Some(ku)) = c.key_usage() {
        if !ku.value.digital_signature() {
            return Err(format!(
                "TSA certificate {s:?}: keyUsage must include digitalSignature"
            ));
        }
    }
    Ok(())
}
