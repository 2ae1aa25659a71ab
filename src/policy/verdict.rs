//! From a [`Decision`] and what trust established, the verdict on one pull — pure.
//!
//! Only this module can build a [`Permit`]; the code that serves content takes one, so a
//! path that skipped the policy does not compile. A signed tag is served only with a
//! [`Verified`], which only a verifier's own proof can build.

use super::decide::Decision;
use super::model::{DigestPulls, Mode, Requirement};
use crate::metrics::DecisionReason;
use crate::signatures::{self, Verified};

/// Proof that the policy allows serving this pull. Carries the warning to send when the rule
/// is in audit mode and the pull violated it.
#[derive(Debug, Clone)]
pub struct Permit {
    rule: String,
    warning: Option<String>,
    reason: DecisionReason,
}

impl Permit {
    pub fn rule(&self) -> &str {
        &self.rule
    }
    /// `Some` when an audit-mode rule was violated: the text of the `Warning: 299` header.
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }
    /// Why the pull was served (`Ok`, or the violation an audit rule let through).
    pub fn reason(&self) -> DecisionReason {
        self.reason
    }
}

/// Why a pull was refused, for the person who pulled.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub rule: String,
    pub reason: DecisionReason,
    /// What happened, in words (no rule name; the error adds it).
    pub message: String,
    /// True when trust could not be established because the trust server could not be
    /// asked: a transient condition (503), not a verdict on the image (403).
    pub unavailable: bool,
    /// The verifier(s) whose answer refused, for the audit event (`None` when no verifier
    /// was asked).
    pub verifier: Option<String>,
}

/// What the tag path does.
#[derive(Debug)]
pub enum TagVerdict {
    /// Serve the upstream tag as it is (rule `allow`, or an audit-mode violation).
    Passthrough(Permit),
    /// Serve exactly this verified digest.
    Signed(Permit, Verified),
    Refuse(Refusal),
}

/// The trust question a `signed` rule asks, if any.
pub fn signed_requirement(decision: &Decision) -> Option<&super::SignedRequirement> {
    match decision.requirement() {
        Requirement::Signed(s) => Some(s),
        Requirement::Allow | Requirement::Reject { .. } => None,
    }
}

/// What the rule's verifiers, combined as it says, found for a tag a `signed` rule governs.
pub type SignatureOutcome = Result<Verified, signatures::Refusal>;

/// Verdict for `GET/HEAD .../manifests/<tag>`. `signatures` must be `Some` exactly when the
/// rule is `signed`; a missing outcome there fails closed.
pub fn judge_tag(decision: &Decision, signatures: Option<SignatureOutcome>) -> TagVerdict {
    let rule = decision.rule_name().to_string();
    let permit = |warning: Option<String>, reason| Permit {
        rule: rule.clone(),
        warning,
        reason,
    };
    let refusal = match (decision.requirement(), signatures) {
        (Requirement::Allow, _) => {
            return TagVerdict::Passthrough(permit(None, DecisionReason::Ok))
        }
        (Requirement::Reject { message }, _) => Refusal {
            rule: rule.clone(),
            reason: DecisionReason::PolicyReject,
            message: message
                .clone()
                .unwrap_or_else(|| "the policy rejects this image".to_string()),
            unavailable: false,
            verifier: None,
        },
        (Requirement::Signed(_), Some(Ok(v))) => {
            return TagVerdict::Signed(permit(None, DecisionReason::Ok), v)
        }
        (Requirement::Signed(_), Some(Err(r))) => Refusal {
            rule: rule.clone(),
            reason: r.reason,
            message: r.message,
            unavailable: r.unavailable,
            verifier: Some(r.verifier),
        },
        // Fail closed: a signed rule with no trust answer is never a permit.
        (Requirement::Signed(_), None) => Refusal {
            rule: rule.clone(),
            reason: DecisionReason::Other,
            message: "trust was not evaluated".to_string(),
            unavailable: false,
            verifier: None,
        },
    };
    audit_or_refuse(decision, refusal)
}

/// Verdict for a pull by digest (manifest or blob). `reached_through_signed_tag` says whether
/// the digest is, or is referenced by, a manifest served through a verified tag.
pub fn judge_digest(
    decision: &Decision,
    digest: &str,
    reached_through_signed_tag: bool,
) -> TagVerdict {
    let rule = decision.rule_name().to_string();
    let ok = Permit {
        rule: rule.clone(),
        warning: None,
        reason: DecisionReason::Ok,
    };
    let refusal = match decision.requirement() {
        Requirement::Allow => return TagVerdict::Passthrough(ok),
        Requirement::Reject { message } => Refusal {
            rule,
            reason: DecisionReason::PolicyReject,
            message: message
                .clone()
                .unwrap_or_else(|| "the policy rejects this image".to_string()),
            unavailable: false,
            verifier: None,
        },
        Requirement::Signed(_) => match decision.digest_pulls() {
            // Docker's semantics: a digest names its content; no signature is needed.
            DigestPulls::Allow => return TagVerdict::Passthrough(ok),
            DigestPulls::SignedOnly if reached_through_signed_tag => {
                return TagVerdict::Passthrough(ok)
            }
            DigestPulls::SignedOnly => Refusal {
                rule,
                reason: DecisionReason::DigestNotTrusted,
                message: format!(
                    "{digest} was not reached through a signed tag, and this rule serves digests only as part of signed images (digest_pulls = \"signed-only\"); pull by a signed tag first"
                ),
                unavailable: false,
                verifier: None,
            },
        },
    };
    audit_or_refuse(decision, refusal)
}

/// Verdict for a listing of a repository (`tags/list`, `referrers`): served upstream with
/// trustgate's own credentials, so a repository the policy rejects is not listed either.
/// Under `signed` a listing is served: tag names and referrer descriptors are not content,
/// and every pull they lead to is judged on its own (an unsigned tag is still refused).
pub fn judge_listing(decision: &Decision) -> TagVerdict {
    let rule = decision.rule_name().to_string();
    let refusal = match decision.requirement() {
        Requirement::Allow | Requirement::Signed(_) => {
            return TagVerdict::Passthrough(Permit {
                rule,
                warning: None,
                reason: DecisionReason::Ok,
            })
        }
        Requirement::Reject { message } => Refusal {
            rule,
            reason: DecisionReason::PolicyReject,
            message: message
                .clone()
                .unwrap_or_else(|| "the policy rejects this image".to_string()),
            unavailable: false,
            verifier: None,
        },
    };
    audit_or_refuse(decision, refusal)
}

fn audit_or_refuse(decision: &Decision, refusal: Refusal) -> TagVerdict {
    match decision.mode() {
        Mode::Enforce => TagVerdict::Refuse(refusal),
        Mode::Audit => TagVerdict::Passthrough(Permit {
            warning: Some(format!(
                "audit: policy rule {} would refuse this pull: {}",
                refusal.rule, refusal.message
            )),
            reason: refusal.reason,
            rule: refusal.rule,
        }),
    }
}
