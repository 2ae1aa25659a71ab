//! What every signature system shares: the proof [`Verified`] that a verifier vouches for a
//! digest, and the any-of / all-of combination a policy rule asks for.
//!
//! A `Verified` is built only from another system's own proof — Notary's
//! [`VerifiedTarget`] (only `trust` builds one) or cosign's [`KeyVerified`] (only
//! `cosign::verify` builds one) or `KeylessVerified` (only `cosign::keyless` builds one) — and the serving functions take it, so a path that skipped
//! a check does not compile (DESIGN.md practice 1).

use std::fmt;

use time::OffsetDateTime;

use crate::cosign::KeyVerified;
use crate::metrics::DecisionReason;
use crate::trust::VerifiedTarget;

/// Which signature system produced a proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Notary,
    Cosign,
    Notation,
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            System::Notary => "notary",
            System::Cosign => "cosign",
            System::Notation => "notation",
        })
    }
}

/// One verifier's vouching, kept for audit events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voucher {
    /// The policy's name for the verifier (`[verifiers.<name>]`, or `rules[2]` for a rule's
    /// inline Notary verifier).
    pub verifier: String,
    pub system: System,
    /// The Notary role, or the cosign key (`key SHA256:<hex>`).
    pub identity: String,
}

impl fmt::Display for Voucher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}: {})", self.verifier, self.system, self.identity)
    }
}

/// Proof that the rule's verifiers vouch for `digest`. Private fields; see the module docs.
#[derive(Debug, Clone)]
pub struct Verified {
    digest: String,
    length: Option<u64>,
    vouchers: Vec<Voucher>,
    /// `Some(expiry)` when a verifier answered from held trust data because its server was
    /// unreachable: serving then is bounded by that expiry and announced.
    held_until: Option<OffsetDateTime>,
}

impl Verified {
    /// Notary v1: the target a verified role signed.
    pub fn from_notary(verifier: &str, t: &VerifiedTarget) -> Verified {
        Verified {
            digest: t.digest().to_string(),
            length: Some(t.length()),
            vouchers: vec![Voucher {
                verifier: verifier.to_string(),
                system: System::Notary,
                identity: t.role().to_string(),
            }],
            held_until: t.from_stored_metadata().then(|| t.expires()),
        }
    }

    /// cosign keyed: a simple-signing signature by a configured key over this digest.
    pub fn from_cosign(verifier: &str, k: &KeyVerified) -> Verified {
        Verified {
            digest: k.digest().to_string(),
            length: None,
            vouchers: vec![Voucher {
                verifier: verifier.to_string(),
                system: System::Cosign,
                identity: format!("key {}", k.key_fingerprint()),
            }],
            held_until: None,
        }
    }

    /// cosign keyless: a Fulcio certificate for the verifier's identity and issuer signed this
    /// digest at a verified time.
    pub fn from_cosign_keyless(
        verifier: &str,
        k: &crate::cosign::keyless::KeylessVerified,
    ) -> Verified {
        Verified {
            digest: k.digest().to_string(),
            length: None,
            vouchers: vec![Voucher {
                verifier: verifier.to_string(),
                system: System::Cosign,
                identity: format!("identity {} (issuer {})", k.identity(), k.issuer()),
            }],
            held_until: None,
        }
    }

    /// Notation: a signature whose payload names this digest (and `length`, which Notation
    /// signs), trusted by the named statement of the trust policy.
    pub fn from_notation(
        verifier: &str,
        target: &crate::notation::TargetDescriptor,
        v: &crate::notation::verify::Verified,
    ) -> Verified {
        let signer = v.signer_subject.as_deref().unwrap_or("?");
        Verified {
            digest: target.digest.clone(),
            length: Some(target.size),
            vouchers: vec![Voucher {
                verifier: verifier.to_string(),
                system: System::Notation,
                // Checks the level only logs travel with the decision into the audit event.
                identity: if v.logged.is_empty() {
                    format!("statement {:?}, signer {signer}", v.statement)
                } else {
                    let logged: Vec<String> =
                        v.logged.iter().map(|(c, m)| format!("{c}: {m}")).collect();
                    format!(
                        "statement {:?}, signer {signer}; logged, not enforced: {}",
                        v.statement,
                        logged.join("; ")
                    )
                },
            }],
            held_until: None,
        }
    }

    /// The digest to serve (`sha256:<hex>`, canonical).
    pub fn digest(&self) -> &str {
        &self.digest
    }
    /// The length a verifier signed, if its system signs one (Notary does, cosign does not).
    pub fn length(&self) -> Option<u64> {
        self.length
    }
    pub fn vouchers(&self) -> &[Voucher] {
        &self.vouchers
    }
    /// For audit events: who vouched, e.g. `dct (notary: targets/releases)`.
    pub fn describe(&self) -> String {
        self.vouchers
            .iter()
            .map(Voucher::to_string)
            .collect::<Vec<_>>()
            .join(" + ")
    }
    /// The roles or keys that vouched, e.g. `targets/releases` (for audit events' `role`).
    pub fn identities(&self) -> String {
        let ids: Vec<&str> = self.vouchers.iter().map(|v| v.identity.as_str()).collect();
        ids.join(" + ")
    }
    /// The verifiers that vouched, e.g. `dct (notary) + release (cosign)`.
    pub fn verifiers(&self) -> String {
        let names: Vec<String> = self
            .vouchers
            .iter()
            .map(|v| format!("{} ({})", v.verifier, v.system))
            .collect();
        names.join(" + ")
    }
    pub fn held_until(&self) -> Option<OffsetDateTime> {
        self.held_until
    }
}

/// Why a verifier (or the combination) does not vouch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The verifier that refused (for `any_of`, every verifier asked, comma-separated).
    pub verifier: String,
    pub reason: DecisionReason,
    pub message: String,
    /// The verifier could not be asked (transient: 503, not a verdict on the image).
    pub unavailable: bool,
}

/// `any_of`: every verifier refused (the caller stops at the first proof). One verifier's
/// refusal is passed on as it is, so a rule with a single verifier reads as before.
pub fn none_vouched(mut refusals: Vec<Refusal>) -> Refusal {
    if refusals.len() == 1 {
        if let Some(r) = refusals.pop() {
            return r;
        }
    }
    let Some(first) = refusals.first() else {
        // Unreachable with a loaded policy (a rule has at least one verifier); fail closed.
        return Refusal {
            verifier: String::new(),
            reason: DecisionReason::Other,
            message: "the rule has no verifiers".into(),
            unavailable: false,
        };
    };
    // Transient only if some verifier that could still have vouched was unreachable.
    let unavailable = refusals.iter().any(|r| r.unavailable);
    let reason = refusals
        .iter()
        .find(|r| r.unavailable == unavailable)
        .map_or(first.reason, |r| r.reason);
    let names: Vec<&str> = refusals.iter().map(|r| r.verifier.as_str()).collect();
    let detail: Vec<String> = refusals
        .iter()
        .map(|r| format!("{}: {}", r.verifier, r.message))
        .collect();
    Refusal {
        verifier: names.join(", "),
        reason,
        message: format!(
            "none of the verifiers [{}] vouches for it (any of them would do): {}",
            names.join(", "),
            detail.join("; ")
        ),
        unavailable,
    }
}

/// `all_of` with one refusal: the rule needs every verifier.
pub fn one_refused(total: usize, r: Refusal) -> Refusal {
    if total == 1 {
        return r;
    }
    Refusal {
        message: format!(
            "verifier {} does not vouch for it, and the rule requires all of its {total} verifiers: {}",
            r.verifier, r.message
        ),
        ..r
    }
}

/// `all_of`: every verifier vouched; they must have vouched for the same digest (and, where
/// several sign a length, the same length).
pub fn all_agree(proofs: Vec<Verified>) -> Result<Verified, Refusal> {
    let mut iter = proofs.into_iter();
    let Some(mut acc) = iter.next() else {
        return Err(none_vouched(Vec::new()));
    };
    for p in iter {
        let length_conflict = matches!((acc.length, p.length), (Some(a), Some(b)) if a != b);
        if p.digest != acc.digest || length_conflict {
            return Err(Refusal {
                verifier: format!("{} + {}", acc.verifiers(), p.verifiers()),
                reason: DecisionReason::SignedByUnacceptedRole,
                message: format!(
                    "the verifiers disagree: {} vouches for {}{}, but {} vouches for {}{}; all of them must vouch for the same digest",
                    acc.describe(),
                    acc.digest,
                    acc.length.map(|l| format!(" ({l} bytes)")).unwrap_or_default(),
                    p.describe(),
                    p.digest,
                    p.length.map(|l| format!(" ({l} bytes)")).unwrap_or_default(),
                ),
                unavailable: false,
            });
        }
        acc.length = acc.length.or(p.length);
        acc.held_until = match (acc.held_until, p.held_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        acc.vouchers.extend(p.vouchers);
    }
    Ok(acc)
}

#[cfg(test)]
mod tests;
