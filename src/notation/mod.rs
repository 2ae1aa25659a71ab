//! Notation (Notary Project) signature verification, as `notation verify` does it, as pure
//! functions: no network, no clock of its own, no file access outside [`truststore`] and
//! [`policy`] loading. The enforce layer fetches the signature manifests and envelope blobs
//! (see [`discover`]) and calls [`verify::verify_signature`] with the resolved descriptor, or
//! [`config::NotationConfig`] for a Notation configuration directory as the CLI keeps it.
//!
//! Sources: notaryproject/specifications@d4b62b9 (`specs/signature-specification.md`,
//! `signature-envelope-jws.md`, `signature-envelope-cose.md`, `trust-store-trust-policy.md`),
//! notation-go@a48f228 (`verifier/verifier.go`, `verifier/trustpolicy/`,
//! `verifier/truststore/`, `internal/pkix/pkix.go`) and notation-core-go@ef87896
//! (`signature/jws/`, `signature/cose/`, `x509/codesigning_cert_validations.go`).
//!
//! Revocation is checked against CRL files the operator provides ([`revocation`]), never
//! fetched; OCSP is not used.
//!
//! RFC 3161 timestamp countersignatures are verified against the statement's `tsa` stores
//! ([`timestamp`]).
//!
//! Not yet supported, and refused rather than allowed: verification plugins (their critical
//! headers fail the signature, as the spec requires of a verifier without plugins), OCSP.

pub mod certs;
pub mod config;
pub mod discover;
pub mod dn;
pub mod envelope;
pub mod policy;
pub mod revocation;
pub mod sigalg;
pub mod timestamp;
pub mod truststore;
pub mod verify;

/// Largest signature envelope accepted (JWS JSON or COSE bytes). Real envelopes with a
/// three-certificate chain and a timestamp are about 10 KiB; the limit leaves room for long
/// chains while bounding the parse.
pub const MAX_ENVELOPE_BYTES: usize = 256 * 1024;
/// Largest signed payload (the `targetArtifact` JSON).
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Most certificates accepted in `x5c` / `x5chain`.
pub const MAX_CHAIN_CERTS: usize = 10;
/// Largest signature manifest or referrers index accepted by [`discover`].
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// The manifest the signature must be about: what trustgate resolved and will serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetDescriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// The verification checks of the trust policy (trust-store-trust-policy.md "Signature
/// Verification details"), named as Notation names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Check {
    Integrity,
    Authenticity,
    AuthenticTimestamp,
    Expiry,
    Revocation,
}

impl Check {
    pub const ALL: [Check; 5] = [
        Check::Integrity,
        Check::Authenticity,
        Check::AuthenticTimestamp,
        Check::Expiry,
        Check::Revocation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Check::Integrity => "integrity",
            Check::Authenticity => "authenticity",
            Check::AuthenticTimestamp => "authenticTimestamp",
            Check::Expiry => "expiry",
            Check::Revocation => "revocation",
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
