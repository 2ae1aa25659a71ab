//! Keyless cosign: a Fulcio certificate vouches for who signed, the trusted root for the
//! certificate, and a transparency-log entry (or an RFC 3161 timestamp) for *when*, which must
//! fall inside the certificate's ten minutes of validity.
//!
//! The cryptographic rules are not re-implemented here: `sigstore-verify` (sigstore-rust, the
//! Sigstore client specification's Rust implementation, tested against sigstore-conformance)
//! checks the certificate chain against the Fulcio CAs of a `trusted_root.json` at the verified
//! signing times (rustls-webpki), the embedded SCT with the CT log keys, the Rekor inclusion
//! promise (SET) and inclusion proof + signed checkpoint with the Rekor keys, RFC 3161 tokens
//! with the TSAs, and the signature over the DSSE envelope or the payload. There is no fallback
//! to the current time: without a verified log or TSA time there is no time to validate the
//! certificate at, and the signature is refused.
//!
//! What trustgate adds (sigstore/cosign `pkg/cosign/verify.go` `CheckCertificatePolicy`):
//! the identity *and* the OIDC issuer, each exact or a (whole-string) regular expression, both
//! required; the optional GitHub workflow claims cosign checks
//! (`--certificate-github-workflow-*`, the Fulcio extensions 1.3.6.1.4.1.57264.1.2–.6); and the
//! image binding (the statement's subject or the payload's digest is the digest served).
//!
//! Roots of trust come only from the file the policy names: no TUF, no network, so this works
//! air-gapped and a root rotation is an explicit policy change.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sigstore_verify::{VerificationPolicy, VerificationResult, Verifier};

use super::simple_signing::SignatureFormat;
use crate::registry::Digest;

mod bundle;
mod provider;
mod simple;

pub use bundle::verify_keyless_bundle;
pub use simple::{
    verify_keyless_layers, CERTIFICATE_ANNOTATION, CHAIN_ANNOTATION, REKOR_BUNDLE_ANNOTATION,
    RFC3161_ANNOTATION,
};

/// An identity or issuer requirement.
#[derive(Debug, Clone)]
pub enum Matcher {
    Exact(String),
    /// Matched against the whole value (anchored), unlike cosign's `…-regexp` flags, which
    /// find the pattern anywhere: an unanchored `https://github.com/org/` would also accept
    /// `https://evil.example/?https://github.com/org/`.
    Regex(regex::Regex),
}

impl Matcher {
    /// A whole-string regular expression (`^(?:pattern)$`). The pattern must be valid on its
    /// own first: a balanced pattern cannot escape the group (`a)|(b` would otherwise read as
    /// `^(?:a)|(b)$`, whose second branch is unanchored).
    pub fn regex(pattern: &str) -> Result<Matcher, String> {
        regex::Regex::new(pattern).map_err(|e| e.to_string())?;
        regex::Regex::new(&format!("^(?:{pattern})$"))
            .map(Matcher::Regex)
            .map_err(|e| e.to_string())
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(s) => s == value,
            Matcher::Regex(r) => r.is_match(value),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matcher::Exact(s) => write!(f, "{s:?}"),
            // Shown as the policy wrote it, without the anchors added here.
            Matcher::Regex(r) => {
                let s = r.as_str();
                let inner = s
                    .strip_prefix("^(?:")
                    .and_then(|s| s.strip_suffix(")$"))
                    .unwrap_or(s);
                write!(f, "matching /{inner}/")
            }
        }
    }
}

/// The GitHub workflow claims `cosign verify --certificate-github-workflow-*` checks: the
/// deprecated Fulcio extensions 1.3.6.1.4.1.57264.1.2 to .6, which Fulcio still sets for
/// GitHub Actions tokens (fulcio `docs/oid-info.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GithubClaim {
    /// `.1.2`, e.g. `push`.
    Trigger,
    /// `.1.3`, the commit.
    Sha,
    /// `.1.4`, the workflow's name.
    Name,
    /// `.1.5`, `owner/repo`.
    Repository,
    /// `.1.6`, e.g. `refs/heads/main`.
    Ref,
}

impl GithubClaim {
    pub const ALL: [(GithubClaim, &'static str); 5] = [
        (GithubClaim::Trigger, "github_workflow_trigger"),
        (GithubClaim::Sha, "github_workflow_sha"),
        (GithubClaim::Name, "github_workflow_name"),
        (GithubClaim::Repository, "github_workflow_repository"),
        (GithubClaim::Ref, "github_workflow_ref"),
    ];

    fn field(self) -> &'static str {
        GithubClaim::ALL
            .iter()
            .find(|(c, _)| *c == self)
            .map_or("github_workflow", |(_, n)| n)
    }
}

/// A `trusted_root.json` (Sigstore `TrustedRoot`, protobuf-specs
/// `sigstore_trustroot.proto`), parsed and prepared once at policy load.
pub struct TrustedRoot {
    path: PathBuf,
    verifier: Verifier,
}

impl fmt::Debug for TrustedRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustedRoot({})", self.path.display())
    }
}

impl TrustedRoot {
    /// Reads and prepares a trusted root; malformed, duplicate or unusable trust material
    /// (sigstore-verify `Verifier::new`) is an error now, not at the first pull.
    pub fn load(path: &Path) -> Result<TrustedRoot, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        TrustedRoot::from_json(path, &text)
    }

    /// As [`TrustedRoot::load`], from the file's text (`path` only names it).
    pub fn from_json(path: &Path, json: &str) -> Result<TrustedRoot, String> {
        provider::install();
        let root = sigstore_trust_root::TrustedRoot::from_json(json)
            .map_err(|e| format!("is not a Sigstore trusted root: {e}"))?;
        if root.certificate_authorities.is_empty() {
            return Err("lists no Fulcio certificate authorities (certificateAuthorities), so no keyless certificate can verify".into());
        }
        let verifier =
            Verifier::new(&root).map_err(|e| format!("holds unusable trust material: {e}"))?;
        Ok(TrustedRoot {
            path: path.to_path_buf(),
            verifier,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What a keyless verifier requires of a signature.
#[derive(Debug, Clone)]
pub struct KeylessPolicy {
    pub root: Arc<TrustedRoot>,
    pub identity: Matcher,
    pub issuer: Matcher,
    pub github: Vec<(GithubClaim, String)>,
    /// Require a verified transparency-log entry (inclusion proof or SET). Without it the
    /// signing time must come from an RFC 3161 timestamp by a trusted TSA.
    pub tlog: bool,
    /// Require the certificate's SCT to verify with a CT log key of the trusted root.
    pub sct: bool,
}

impl KeylessPolicy {
    /// The requirement as refusals name it.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "a Fulcio certificate (trusted root {}) for identity {} issued by {}",
            self.root.path.display(),
            self.identity,
            self.issuer
        );
        for (c, v) in &self.github {
            s.push_str(&format!(", {} {v:?}", c.field()));
        }
        s
    }

    /// sigstore-verify's policy: cryptography only (chain, SCT, log, signature). The identity
    /// is matched by [`KeylessPolicy::check_identity`], so refusals can say what was found.
    fn sigstore_policy(&self) -> VerificationPolicy {
        let mut p = VerificationPolicy::any_identity();
        if !self.tlog {
            p = p.skip_tlog_unsafe();
        }
        if !self.sct {
            p = p.skip_sct();
        }
        p
    }

    fn verify(
        &self,
        artifact: sigstore_types::Artifact<'_>,
        bundle: &sigstore_types::Bundle,
    ) -> Result<Signer, KeylessProblem> {
        let result = self
            .root
            .verifier
            .verify(artifact, bundle, &self.sigstore_policy())
            .map_err(|e| KeylessProblem::Sigstore {
                reason: e.to_string(),
            })?;
        self.check_identity(&result)
    }

    /// cosign `CheckCertificatePolicy`: identity and issuer, then the GitHub claims. Also
    /// re-checks that the evidence this policy requires was in fact verified.
    fn check_identity(&self, r: &VerificationResult) -> Result<Signer, KeylessProblem> {
        let missing = if !r.certificate_verified() {
            Some("the certificate chain")
        } else if self.sct && !r.sct_verified() {
            Some("the SCT")
        } else if self.tlog && !r.tlog_verified() {
            Some("the transparency-log entry")
        } else {
            None
        };
        if let Some(what) = missing {
            return Err(KeylessProblem::Sigstore {
                reason: format!("{what} was not verified"),
            });
        }
        let cert = r.certificate().ok_or_else(|| KeylessProblem::Sigstore {
            reason: "no signing certificate".into(),
        })?;
        let identity = cert.identity.as_ref().map(|i| i.as_str().to_string());
        let issuer = cert.issuer.clone();
        let id_ok = identity
            .as_deref()
            .is_some_and(|i| self.identity.matches(i));
        let iss_ok = issuer.as_deref().is_some_and(|i| self.issuer.matches(i));
        if !id_ok || !iss_ok {
            return Err(KeylessProblem::Identity {
                expected_identity: self.identity.to_string(),
                expected_issuer: self.issuer.to_string(),
                found_identity: identity,
                found_issuer: issuer,
            });
        }
        let gh = &cert.ci_claims.deprecated_github;
        for (claim, want) in &self.github {
            let found = match claim {
                GithubClaim::Trigger => &gh.workflow_trigger,
                GithubClaim::Sha => &gh.workflow_sha,
                GithubClaim::Name => &gh.workflow_name,
                GithubClaim::Repository => &gh.workflow_repository,
                GithubClaim::Ref => &gh.workflow_ref,
            };
            if found.as_deref() != Some(want.as_str()) {
                return Err(KeylessProblem::Claim {
                    field: claim.field(),
                    expected: want.clone(),
                    found: found.clone(),
                });
            }
        }
        Ok(Signer {
            identity: identity.unwrap_or_default(),
            issuer: issuer.unwrap_or_default(),
            integrated_time: r.integrated_time().map(|t| t.as_second()),
        })
    }
}

/// Who a verified certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Signer {
    identity: String,
    issuer: String,
    integrated_time: Option<i64>,
}

/// Proof that a Fulcio certificate for the policy's identity and issuer signed a payload
/// naming `digest`, at a verified time within the certificate's validity. Only this module
/// builds one.
#[derive(Debug, Clone)]
pub struct KeylessVerified {
    digest: Digest,
    signer: Signer,
    format: SignatureFormat,
}

impl KeylessVerified {
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
    /// The certificate's SAN (email or URI).
    pub fn identity(&self) -> &str {
        &self.signer.identity
    }
    /// The certificate's OIDC issuer extension.
    pub fn issuer(&self) -> &str {
        &self.signer.issuer
    }
    /// The Rekor integrated time (Unix seconds), when a log entry was verified.
    pub fn integrated_time(&self) -> Option<i64> {
        self.signer.integrated_time
    }
    pub fn format(&self) -> SignatureFormat {
        self.format
    }
}

/// Why a keyless signature did not vouch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeylessProblem {
    /// A key-signed signature where a certificate is required.
    NoCertificate,
    /// sigstore-verify refused: chain, validity at the signing time, SCT, log, signature.
    Sigstore { reason: String },
    Identity {
        expected_identity: String,
        expected_issuer: String,
        found_identity: Option<String>,
        found_issuer: Option<String>,
    },
    Claim {
        field: &'static str,
        expected: String,
        found: Option<String>,
    },
}

impl fmt::Display for KeylessProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let none = |v: &Option<String>| v.as_ref().map_or("none".to_string(), |s| format!("{s:?}"));
        match self {
            KeylessProblem::NoCertificate => {
                write!(f, "signed with a key, not a Fulcio certificate")
            }
            KeylessProblem::Sigstore { reason } => write!(f, "{reason}"),
            KeylessProblem::Identity {
                expected_identity,
                expected_issuer,
                found_identity,
                found_issuer,
            } => write!(
                f,
                "certificate is for identity {} issued by {}; expected identity {expected_identity} issued by {expected_issuer}",
                none(found_identity),
                none(found_issuer)
            ),
            KeylessProblem::Claim {
                field,
                expected,
                found,
            } => write!(
                f,
                "certificate has {field} {}, expected {expected:?}",
                none(found)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Matcher;

    #[test]
    fn regexes_match_whole_values_and_cannot_escape_their_anchors() {
        let m = Matcher::regex(r"https://github\.com/org/.*").unwrap();
        assert!(m.matches("https://github.com/org/app/.github/workflows/r.yml@refs/heads/main"));
        assert!(!m.matches("https://evil.example/?https://github.com/org/x"));
        assert!(!Matcher::regex("org")
            .unwrap()
            .matches("https://github.com/org/"));
        // Would be `^(?:a)|(b)$` if spliced in unchecked: "xxb" would match.
        assert!(Matcher::regex("a)|(b").is_err());
        assert!(Matcher::regex("a|b").unwrap().matches("b"));
        assert!(!Matcher::regex("a|b").unwrap().matches("xxb"));
        assert_eq!(Matcher::regex("a|b").unwrap().to_string(), "matching /a|b/");
        assert!(Matcher::Exact("x".into()).matches("x"));
        assert!(!Matcher::Exact("x".into()).matches("x "));
    }
}
