//! The policy file: which images need what, and `decide()` — pure.
//!
//! A policy is a TOML file of `[[rules]]`, each with a `scope` pattern over
//! `<registry>/<repository>` and a requirement (`allow`, `reject`, `signed`), plus a `[default]`
//! for images no rule covers (if `[default]` is absent, such images are refused: fail closed).
//! Loading validates everything — scopes, enums, trust-server references, role names, GUN
//! templates, and every referenced PEM file — and reports *all* problems with file, line and
//! field. See `policy/*.toml` for examples and `README` for the format reference.
//!
//! Decision order (implemented in `decide.rs`): the most specific matching scope wins — more
//! literal segments, then fewer `**`, then fewer `*` — and equally specific
//! scopes go to the rule written first; with no match, the default applies.

pub mod cli;
mod cosign_keyless;
mod decide;
mod error;
mod explain;
mod load;
mod matcher;
mod model;
mod raw;
mod references;
pub mod reload;
mod verdict;
mod verifiers;

use std::path::Path;
use std::sync::Arc;

pub use decide::Decision;
pub use error::{PolicyError, PolicyErrorKind, PolicyErrors};
pub use explain::{check_file, explain, explain_file, ImageRef};
pub use matcher::{ScopePattern, Specificity};
pub use model::{
    Combine, CosignKey, CosignVerifier, DigestPulls, GunTemplate, Mode, NotaryVerifier,
    NotationVerifier, Pin, PinnedCert, Requirement, RoleRequirement, Rule, RuleId,
    SignedRequirement, TrustPinning, TrustServer, Verifier, VerifierKind,
};
pub use reload::{PolicyHandle, ReloadOutcome, DEFAULT_WATCH_INTERVAL};
pub use verdict::{
    judge_digest, judge_listing, judge_tag, signed_requirement, Permit, Refusal, SignatureOutcome,
    TagVerdict,
};

/// Origin name used for the built-in policy in messages.
pub const EMBEDDED_ORIGIN: &str = "<embedded default policy>";
const EMBEDDED_TEXT: &str = include_str!("../../policy/default.toml");

/// A loaded, fully validated policy. Immutable; reloads build a new one.
#[derive(Debug, Clone)]
pub struct Policy {
    origin: String,
    rules: Vec<Arc<Rule>>,
    default: Arc<Rule>,
    servers: Vec<Arc<TrustServer>>,
}

impl Policy {
    /// Reads and validates a policy file. Relative paths inside it resolve against the
    /// file's directory.
    pub fn load(path: impl AsRef<Path>) -> Result<Policy, PolicyErrors> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PolicyErrors {
            errors: vec![PolicyError {
                origin: origin.clone(),
                line: None,
                field: String::new(),
                kind: PolicyErrorKind::Read {
                    reason: e.to_string(),
                },
            }],
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        load::load(&text, &origin, base)
    }

    /// Validates policy text; `origin` names it in messages. Relative paths resolve against
    /// the current directory.
    pub fn from_str(text: &str, origin: &str) -> Result<Policy, PolicyErrors> {
        load::load(text, origin, Path::new("."))
    }

    /// Like `from_str`, with relative paths resolved against `base_dir`.
    pub fn from_str_in(text: &str, origin: &str, base_dir: &Path) -> Result<Policy, PolicyErrors> {
        load::load(text, origin, base_dir)
    }

    /// The built-in policy (`policy/default.toml`): every image must be signed, checked
    /// against the Notary server at `http://127.0.0.1:4443` with trust on first use, Docker's
    /// roles (`targets/releases`, then `targets`), enforce mode, digest pulls allowed.
    pub fn embedded_default() -> Policy {
        match Policy::from_str(EMBEDDED_TEXT, EMBEDDED_ORIGIN) {
            Ok(p) => p,
            // A test loads the embedded text, so this is unreachable in a tested build; if it
            // ever happens, refuse everything rather than panic or allow.
            Err(errors) => {
                tracing::error!(%errors, "embedded default policy is invalid; refusing all images");
                Policy::reject_all(EMBEDDED_ORIGIN)
            }
        }
    }

    fn reject_all(origin: &str) -> Policy {
        Policy {
            origin: origin.to_string(),
            rules: Vec::new(),
            default: Arc::new(Rule {
                id: RuleId::Default,
                name: "default".into(),
                scope: None,
                requirement: Requirement::Reject {
                    message: Some("the policy could not be loaded".into()),
                },
                mode: Mode::Enforce,
                digest_pulls: DigestPulls::Allow,
            }),
            servers: Vec::new(),
        }
    }

    /// The file path or origin name this policy came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The `[[rules]]`, in file order.
    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }

    pub fn default_rule(&self) -> &Rule {
        &self.default
    }

    /// Every `[trust_servers.<name>]`, sorted by name.
    pub fn trust_servers(&self) -> &[Arc<TrustServer>] {
        &self.servers
    }

    /// Which rule governs `registry/repository` (see the module docs for the order).
    pub fn decide(&self, registry: &str, repository: &str) -> Decision {
        decide::decide(self, registry, repository)
    }
}
