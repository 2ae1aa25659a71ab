//! From a [`Decision`] and what trust established, the verdict on one pull — pure.
//!
//! Only this module can build a [`Permit`]; the code that serves content takes one, so a
//! path that skipped the policy does not compile. A signed tag is served only with a
//! [`VerifiedTarget`], which only the trust module can build.

use super::decide::Decision;
use super::model::{DigestPulls, Mode, Requirement, RoleRequirement};
use crate::metrics::DecisionReason;
use crate::trust::{RefusalReason, TrustError, VerifiedTarget};

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
}

/// What the tag path does.
#[derive(Debug)]
pub enum TagVerdict {
    /// Serve the upstream tag as it is (rule `allow`, or an audit-mode violation).
    Passthrough(Permit),
    /// Serve exactly this signed target, fetched by its digest.
    Signed(Permit, VerifiedTarget),
    Refuse(Refusal),
}

/// What trust found for a tag that a `signed` rule governs.
#[derive(Debug)]
pub enum TrustOutcome {
    Verified(VerifiedTarget),
    Failed(TrustError),
    /// `require_all`: the roles signed different content for the tag.
    RolesDisagree {
        detail: String,
    },
}

/// The trust question a `signed` rule asks, if any.
pub fn signed_requirement(decision: &Decision) -> Option<&super::SignedRequirement> {
    match decision.requirement() {
        Requirement::Signed(s) => Some(s),
        Requirement::Allow | Requirement::Reject { .. } => None,
    }
}

/// Verdict for `GET/HEAD .../manifests/<tag>`. `trust` must be `Some` exactly when the rule
/// is `signed`; a missing outcome there fails closed.
pub fn judge_tag(decision: &Decision, tag: &str, trust: Option<TrustOutcome>) -> TagVerdict {
    let rule = decision.rule_name().to_string();
    let permit = |warning: Option<String>, reason| Permit {
        rule: rule.clone(),
        warning,
        reason,
    };
    let refusal = match (decision.requirement(), trust) {
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
        },
        (Requirement::Signed(_), Some(TrustOutcome::Verified(t))) => {
            return TagVerdict::Signed(permit(None, DecisionReason::Ok), t)
        }
        (Requirement::Signed(req), Some(TrustOutcome::Failed(e))) => {
            trust_refusal(&rule, tag, req.roles(), &e)
        }
        (Requirement::Signed(_), Some(TrustOutcome::RolesDisagree { detail })) => Refusal {
            rule: rule.clone(),
            reason: DecisionReason::SignedByUnacceptedRole,
            message: detail,
            unavailable: false,
        },
        // Fail closed: a signed rule with no trust answer is never a permit.
        (Requirement::Signed(_), None) => Refusal {
            rule: rule.clone(),
            reason: DecisionReason::Other,
            message: "trust was not evaluated".to_string(),
            unavailable: false,
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

fn trust_refusal(rule: &str, tag: &str, roles: &RoleRequirement, e: &TrustError) -> Refusal {
    let (reason, unavailable) = match e.reason() {
        RefusalReason::NoTrustData => (DecisionReason::NoTrustData, false),
        RefusalReason::TagNotSigned => (DecisionReason::TagNotSigned, false),
        RefusalReason::TagRevoked => (DecisionReason::TagRevoked, false),
        RefusalReason::SignedByUnacceptedRole => (DecisionReason::SignedByUnacceptedRole, false),
        RefusalReason::Expired => (DecisionReason::Expired, false),
        RefusalReason::SignatureInvalid => (DecisionReason::SignatureInvalid, false),
        RefusalReason::Unreachable => (DecisionReason::TrustUnreachable, true),
        // trustgate's own state could not be read or written (full disk, damaged file): a
        // fault on this host, never a verdict on the image, and its detail (a local path,
        // an errno) is for the log only.
        RefusalReason::Other if matches!(e, TrustError::Store { .. }) => {
            return Refusal {
                rule: rule.to_string(),
                reason: DecisionReason::TrustStateError,
                message: "trustgate could not read or write its stored trust data (a fault on the trustgate host, not a verdict on the image; see its log)".to_string(),
                unavailable: true,
            };
        }
        RefusalReason::Other => (DecisionReason::Other, false),
    };
    let what = match reason {
        DecisionReason::NoTrustData => "the repository has no trust data (it was never signed)".to_string(),
        DecisionReason::TagNotSigned => format!("tag {tag} is not signed by any accepted role ({roles})"),
        DecisionReason::TagRevoked => format!("tag {tag} was revoked by its publisher"),
        DecisionReason::SignedByUnacceptedRole => {
            format!("tag {tag} is signed only by a role the policy does not accept (accepted: {roles})")
        }
        DecisionReason::Expired => "the trust data has expired".to_string(),
        DecisionReason::SignatureInvalid => "the trust data failed verification".to_string(),
        DecisionReason::TrustUnreachable => {
            "the trust server is unreachable and no still-valid verified trust data is held (fail closed)".to_string()
        }
        DecisionReason::Ok
        | DecisionReason::PolicyReject
        | DecisionReason::DigestNotTrusted
        | DecisionReason::ContentMismatch
        | DecisionReason::TrustStateError
        | DecisionReason::Other => "trust could not be established".to_string(),
    };
    Refusal {
        rule: rule.to_string(),
        reason,
        message: format!("{what}: {e}"),
        unavailable,
    }
}
