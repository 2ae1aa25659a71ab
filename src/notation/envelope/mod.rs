//! Signature envelopes: both formats reduce to one [`SignerInfo`] after the rules they share
//! (signature-specification.md "Signed Attributes"; notation-core-go `signature/jws/jws.go`
//! `validateProtectedHeaders`, `validateCriticalHeaders`, and the COSE equivalents in
//! `signature/cose/envelope.go`).

pub mod cose;
pub mod jws;

use std::collections::BTreeSet;

use serde::Deserialize;
use time::OffsetDateTime;

use super::sigalg::Alg;
use super::{TargetDescriptor, MAX_CHAIN_CERTS, MAX_ENVELOPE_BYTES, MAX_PAYLOAD_BYTES};

pub const MEDIA_TYPE_JWS: &str = "application/jose+json";
pub const MEDIA_TYPE_COSE: &str = "application/cose";
/// The only payload content type (signature-specification.md "Payload").
pub const PAYLOAD_CONTENT_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";

pub const H_SIGNING_SCHEME: &str = "io.cncf.notary.signingScheme";
pub const H_SIGNING_TIME: &str = "io.cncf.notary.signingTime";
pub const H_AUTHENTIC_SIGNING_TIME: &str = "io.cncf.notary.authenticSigningTime";
pub const H_EXPIRY: &str = "io.cncf.notary.expiry";
pub const H_VERIFICATION_PLUGIN: &str = "io.cncf.notary.verificationPlugin";
pub const H_VERIFICATION_PLUGIN_MIN: &str = "io.cncf.notary.verificationPluginMinVersion";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningScheme {
    /// `notary.x509`: signing time is the signer's claim; authenticity of time comes from an
    /// RFC 3161 countersignature.
    X509,
    /// `notary.x509.signingAuthority`: the signing authority vouches for the signing time.
    X509SigningAuthority,
}

impl SigningScheme {
    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "notary.x509" => Ok(SigningScheme::X509),
            "notary.x509.signingAuthority" => Ok(SigningScheme::X509SigningAuthority),
            other => Err(format!("unsupported signing scheme {other:?}")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SigningScheme::X509 => "notary.x509",
            SigningScheme::X509SigningAuthority => "notary.x509.signingAuthority",
        }
    }
}

/// What an envelope says, once parsed and checked for shape (not yet for its signature).
#[derive(Debug, Clone)]
pub struct SignerInfo {
    pub alg: Alg,
    pub scheme: SigningScheme,
    /// `signingTime` (notary.x509) or `authenticSigningTime` (signingAuthority).
    pub signing_time: OffsetDateTime,
    pub expiry: Option<OffsetDateTime>,
    /// DER certificates, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// The RFC 3161 countersignature, if any (unsigned attribute).
    pub timestamp_signature: Option<Vec<u8>>,
    pub signing_agent: Option<String>,
    pub payload: Vec<u8>,
    /// The exact bytes the signature covers (JWS signing input, COSE Sig_structure).
    pub signed_bytes: Vec<u8>,
    pub signature: Vec<u8>,
}

/// The protected header as both formats present it, before the shared rules.
pub(crate) struct Protected {
    pub alg: Alg,
    pub cty: Option<String>,
    pub crit: Vec<String>,
    pub scheme: Option<String>,
    pub signing_time: Option<OffsetDateTime>,
    pub authentic_signing_time: Option<OffsetDateTime>,
    pub expiry: Option<OffsetDateTime>,
    /// Names of every other protected header (extended attributes).
    pub extended: BTreeSet<String>,
}

pub(crate) struct Checked {
    pub scheme: SigningScheme,
    pub signing_time: OffsetDateTime,
    pub expiry: Option<OffsetDateTime>,
}

/// The rules JWS and COSE share (notation-core-go jws.go `validateProtectedHeaders`,
/// `validateCriticalHeaders`; signature-specification.md "Signed Attributes" and "Extended
/// attributes for Notation Plugins").
pub(crate) fn check_protected(p: &Protected) -> Result<Checked, String> {
    match p.cty.as_deref() {
        Some(PAYLOAD_CONTENT_TYPE) => {}
        Some(other) => {
            return Err(format!(
                "content type {other:?} is not {PAYLOAD_CONTENT_TYPE:?}"
            ))
        }
        None => return Err("the protected header has no content type (cty)".into()),
    }
    let scheme = SigningScheme::parse(
        p.scheme
            .as_deref()
            .ok_or_else(|| format!("the protected header has no {H_SIGNING_SCHEME}"))?,
    )?;
    let signing_time = match scheme {
        SigningScheme::X509 => {
            if p.authentic_signing_time.is_some() {
                return Err(format!(
                    "{H_AUTHENTIC_SIGNING_TIME} must not be present for notary.x509"
                ));
            }
            p.signing_time
                .ok_or_else(|| format!("{H_SIGNING_TIME} is missing (required for notary.x509)"))?
        }
        SigningScheme::X509SigningAuthority => {
            if p.signing_time.is_some() {
                return Err(format!(
                    "{H_SIGNING_TIME} must not be present for notary.x509.signingAuthority"
                ));
            }
            p.authentic_signing_time.ok_or_else(|| {
                format!("{H_AUTHENTIC_SIGNING_TIME} is missing (required for notary.x509.signingAuthority)")
            })?
        }
    };
    if p.crit.is_empty() {
        return Err("the protected header has no crit list".into());
    }
    let mut must: BTreeSet<&str> = [H_SIGNING_SCHEME].into();
    if p.expiry.is_some() {
        must.insert(H_EXPIRY);
    }
    if scheme == SigningScheme::X509SigningAuthority {
        must.insert(H_AUTHENTIC_SIGNING_TIME);
    }
    for name in &p.crit {
        if must.remove(name.as_str()) {
            continue;
        }
        if name == H_VERIFICATION_PLUGIN || name == H_VERIFICATION_PLUGIN_MIN {
            // signature-specification.md "Extended attributes for Notation Plugins": a
            // verifier that cannot run the named plugin must fail the signature.
            return Err(format!(
                "critical header {name:?} requires a verification plugin, which trustgate does not run"
            ));
        }
        if name == H_SIGNING_TIME {
            continue;
        }
        // RFC 7515 §4.1.11 / signature-specification.md "Extended attributes": a critical
        // attribute the verifier does not understand fails the signature.
        if p.extended.contains(name) {
            return Err(format!("unknown critical header {name:?}"));
        }
        return Err(format!(
            "header {name:?} is marked critical but not present"
        ));
    }
    if !must.is_empty() {
        return Err(format!(
            "required headers not marked critical: {}",
            must.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(Checked {
        scheme,
        signing_time,
        expiry: p.expiry,
    })
}

/// Parses an envelope of the given media type, bounded in size.
pub fn parse(media_type: &str, bytes: &[u8]) -> Result<SignerInfo, String> {
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(format!(
            "the signature envelope is {} bytes, more than the {MAX_ENVELOPE_BYTES} accepted",
            bytes.len()
        ));
    }
    let info = match media_type {
        MEDIA_TYPE_JWS => jws::parse(bytes)?,
        MEDIA_TYPE_COSE => cose::parse(bytes)?,
        other => {
            return Err(format!(
            "envelope media type {other:?} is neither {MEDIA_TYPE_JWS:?} nor {MEDIA_TYPE_COSE:?}"
        ))
        }
    };
    if info.chain.is_empty() {
        return Err("the envelope carries no certificate chain".into());
    }
    if info.chain.len() > MAX_CHAIN_CERTS {
        return Err(format!(
            "the certificate chain has {} certificates, more than the {MAX_CHAIN_CERTS} accepted",
            info.chain.len()
        ));
    }
    if info.payload.len() > MAX_PAYLOAD_BYTES {
        return Err(format!(
            "the payload is larger than {MAX_PAYLOAD_BYTES} bytes"
        ));
    }
    Ok(info)
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "targetArtifact")]
    target_artifact: Target,
}

#[derive(Deserialize)]
struct Target {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
}

/// signature-specification.md "Payload": the signed `targetArtifact` must be the manifest
/// being verified — digest, media type and size (notation-go `notation.go` `Verify`:
/// "integrity check failed. signature does not match the given artifact").
pub fn check_payload(payload: &[u8], want: &TargetDescriptor) -> Result<(), String> {
    let p: Payload = serde_json::from_slice(payload)
        .map_err(|e| format!("the payload is not a Notation payload: {e}"))?;
    let got = p.target_artifact;
    if got.digest != want.digest {
        return Err(format!(
            "the signature is for digest {}, not {}",
            got.digest, want.digest
        ));
    }
    if got.media_type != want.media_type {
        return Err(format!(
            "the signature is for media type {:?}, not {:?}",
            got.media_type, want.media_type
        ));
    }
    if got.size != want.size {
        return Err(format!(
            "the signature is for size {}, not {}",
            got.size, want.size
        ));
    }
    Ok(())
}
