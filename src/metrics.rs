//! Counters for `/metrics`, in the Prometheus text exposition format (version 0.0.4).
//!
//! Every label takes its value from a closed enum, so the number of series is fixed at compile
//! time: no image name, tag, client address or error string ever becomes a label (those go to
//! the audit log, see [`crate::audit`]). With a handful of counters the format is written by
//! hand; a metrics crate would add a registry and dynamic labels this does not need.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Content-Type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

macro_rules! label_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $label:literal,)+ }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $variant,)+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The label value, also used in audit events.
            pub fn label(self) -> &'static str {
                match self { $($name::$variant => $label,)+ }
            }

            fn index(self) -> usize {
                self as usize
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.label())
            }
        }
    };
}

label_enum!(
    /// What trustgate did with a pull.
    Outcome {
        /// Served as asked (policy `allow`, or a digest pull that needs no signature).
        Allow => "allow",
        /// A tag served as the digest its publisher signed.
        Rewrite => "rewrite",
        /// Refused.
        Deny => "deny",
        /// Would have been refused, but the rule is in `audit` mode: served, with a warning.
        AuditViolation => "audit_violation",
    }
);

label_enum!(
    /// Why, as a bounded label. The trust module's refusal reasons map onto these.
    DecisionReason {
        /// Nothing to explain: allowed by policy, or signed and verified.
        Ok => "ok",
        PolicyReject => "policy_reject",
        NoTrustData => "no_trust_data",
        TagNotSigned => "tag_not_signed",
        TagRevoked => "tag_revoked",
        SignedByUnacceptedRole => "unaccepted_role",
        Expired => "expired",
        SignatureInvalid => "signature_invalid",
        TrustUnreachable => "trust_unreachable",
        /// A `signed-only` digest pull of content not reached through a trusted tag.
        DigestNotTrusted => "digest_not_trusted",
        /// Upstream bytes did not match the signed digest or length.
        ContentMismatch => "content_mismatch",
        /// trustgate could not read or write its own stored trust data (a local fault).
        TrustStateError => "trust_state_error",
        Other => "other",
    }
);

label_enum!(
    /// Which kind of remote failed.
    Upstream {
        Registry => "registry",
        TrustServer => "trust_server",
    }
);

label_enum!(
    /// How a remote failed.
    UpstreamFailure {
        Connect => "connect",
        Timeout => "timeout",
        /// An unexpected HTTP status.
        Status => "status",
        /// A malformed or oversized response.
        Protocol => "protocol",
        Other => "other",
    }
);

label_enum!(
    /// What the on-disk content cache was asked for.
    ContentKind {
        Manifest => "manifest",
        Blob => "blob",
    }
);

label_enum!(
    /// Which signature system a policy verifier uses (verifier *names* are the audit log's).
    VerifierSystem {
        Notary => "notary",
        Cosign => "cosign",
    }
);

label_enum!(
    /// One verifier's answer for one pull.
    VerificationResult {
        /// It vouched for a digest.
        Verified => "verified",
        /// It did not (unsigned, wrong key, invalid, another digest, ...).
        Refused => "refused",
        /// It could not be asked (trust server or registry unreachable).
        Unavailable => "unavailable",
    }
);

const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

fn status_class(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        500..=599 => 4,
        _ => 5,
    }
}

fn counters(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

/// All of trustgate's counters. Cheap to update from any task; share it in an `Arc`.
pub struct Metrics {
    decisions: Box<[AtomicU64]>,
    requests: Box<[AtomicU64]>,
    upstream_errors: Box<[AtomicU64]>,
    trust_cache: [AtomicU64; 2],
    policy_reloads: [AtomicU64; 2],
    content_cache: [[AtomicU64; 2]; 2],
    verifications: Box<[AtomicU64]>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            decisions: counters(Outcome::ALL.len() * DecisionReason::ALL.len()),
            requests: counters(STATUS_CLASSES.len()),
            upstream_errors: counters(Upstream::ALL.len() * UpstreamFailure::ALL.len()),
            trust_cache: Default::default(),
            policy_reloads: Default::default(),
            content_cache: Default::default(),
            verifications: counters(VerifierSystem::ALL.len() * VerificationResult::ALL.len()),
        }
    }

    fn decision_slot(outcome: Outcome, reason: DecisionReason) -> usize {
        outcome.index() * DecisionReason::ALL.len() + reason.index()
    }

    fn upstream_slot(upstream: Upstream, failure: UpstreamFailure) -> usize {
        upstream.index() * UpstreamFailure::ALL.len() + failure.index()
    }

    /// Counts one decision. Call it through [`crate::audit::record`], which also logs it, so
    /// the log and the counters cannot disagree.
    pub fn record_decision(&self, outcome: Outcome, reason: DecisionReason) {
        self.decisions[Self::decision_slot(outcome, reason)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn decision_count(&self, outcome: Outcome, reason: DecisionReason) -> u64 {
        self.decisions[Self::decision_slot(outcome, reason)].load(Ordering::Relaxed)
    }

    /// Counts one answered request by the class of its status.
    pub fn record_request(&self, status: u16) {
        self.requests[status_class(status)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_upstream_error(&self, upstream: Upstream, failure: UpstreamFailure) {
        self.upstream_errors[Self::upstream_slot(upstream, failure)]
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a verified-tag cache lookup.
    pub fn record_trust_cache(&self, hit: bool) {
        self.trust_cache[usize::from(hit)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an on-disk content cache lookup.
    pub fn record_content_cache(&self, kind: ContentKind, hit: bool) {
        self.content_cache[kind.index()][usize::from(hit)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn content_cache_count(&self, kind: ContentKind, hit: bool) -> u64 {
        self.content_cache[kind.index()][usize::from(hit)].load(Ordering::Relaxed)
    }

    /// Counts one verifier's answer (a rule with several verifiers asks each in turn).
    pub fn record_verification(&self, system: VerifierSystem, result: VerificationResult) {
        self.verifications[system.index() * VerificationResult::ALL.len() + result.index()]
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn verification_count(&self, system: VerifierSystem, result: VerificationResult) -> u64 {
        self.verifications[system.index() * VerificationResult::ALL.len() + result.index()]
            .load(Ordering::Relaxed)
    }

    /// Counts a policy (re)load attempt; a refused reload leaves the old policy in force.
    pub fn record_policy_reload(&self, accepted: bool) {
        self.policy_reloads[usize::from(accepted)].fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text. Decision series appear once they are non-zero (most
    /// outcome × reason pairs cannot occur); the other families are always complete.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        header(
            &mut out,
            "trustgate_decisions_total",
            "Pull decisions by outcome and reason.",
        );
        for &o in Outcome::ALL {
            for &r in DecisionReason::ALL {
                let n = self.decision_count(o, r);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "trustgate_decisions_total{{outcome=\"{o}\",reason=\"{r}\"}} {n}"
                    );
                }
            }
        }
        header(
            &mut out,
            "trustgate_requests_total",
            "HTTP requests answered, by status class.",
        );
        for (i, class) in STATUS_CLASSES.iter().enumerate() {
            let n = self.requests[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "trustgate_requests_total{{class=\"{class}\"}} {n}");
        }
        header(
            &mut out,
            "trustgate_upstream_errors_total",
            "Failed calls to registries and trust servers.",
        );
        for &u in Upstream::ALL {
            for &f in UpstreamFailure::ALL {
                let n = self.upstream_errors[Self::upstream_slot(u, f)].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "trustgate_upstream_errors_total{{upstream=\"{u}\",kind=\"{f}\"}} {n}"
                );
            }
        }
        header(
            &mut out,
            "trustgate_trust_cache_lookups_total",
            "Verified-tag cache lookups.",
        );
        for (i, result) in ["miss", "hit"].iter().enumerate() {
            let n = self.trust_cache[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "trustgate_trust_cache_lookups_total{{result=\"{result}\"}} {n}"
            );
        }
        header(
            &mut out,
            "trustgate_policy_reloads_total",
            "Policy load attempts; rejected ones leave the previous policy in force.",
        );
        for (i, result) in ["rejected", "accepted"].iter().enumerate() {
            let n = self.policy_reloads[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "trustgate_policy_reloads_total{{result=\"{result}\"}} {n}"
            );
        }
        header(
            &mut out,
            "trustgate_content_cache_lookups_total",
            "On-disk content cache lookups (verified manifests and blobs by digest).",
        );
        for &k in ContentKind::ALL {
            for (i, result) in ["miss", "hit"].iter().enumerate() {
                let n = self.content_cache[k.index()][i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "trustgate_content_cache_lookups_total{{kind=\"{k}\",result=\"{result}\"}} {n}"
                );
            }
        }
        header(
            &mut out,
            "trustgate_verifications_total",
            "Answers of policy verifiers, by signature system and result.",
        );
        for &v in VerifierSystem::ALL {
            for &r in VerificationResult::ALL {
                let n = self.verification_count(v, r);
                let _ = writeln!(
                    out,
                    "trustgate_verifications_total{{system=\"{v}\",result=\"{r}\"}} {n}"
                );
            }
        }
        out
    }
}

fn header(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_and_prometheus_safe() {
        let mut seen = std::collections::HashSet::new();
        for l in DecisionReason::ALL.iter().map(|r| r.label()) {
            assert!(seen.insert(l), "duplicate reason label {l}");
            assert!(l.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{l}");
        }
        assert_eq!(Outcome::AuditViolation.label(), "audit_violation");
    }

    #[test]
    fn decisions_are_counted_per_outcome_and_reason() {
        let m = Metrics::new();
        m.record_decision(Outcome::Deny, DecisionReason::TagNotSigned);
        m.record_decision(Outcome::Deny, DecisionReason::TagNotSigned);
        m.record_decision(Outcome::Rewrite, DecisionReason::Ok);
        assert_eq!(
            m.decision_count(Outcome::Deny, DecisionReason::TagNotSigned),
            2
        );
        assert_eq!(m.decision_count(Outcome::Rewrite, DecisionReason::Ok), 1);
        assert_eq!(m.decision_count(Outcome::Deny, DecisionReason::Expired), 0);
        let text = m.render();
        assert!(
            text.contains(
                "trustgate_decisions_total{outcome=\"deny\",reason=\"tag_not_signed\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.contains("trustgate_decisions_total{outcome=\"rewrite\",reason=\"ok\"} 1\n"));
        assert!(!text.contains("reason=\"expired\""));
    }

    #[test]
    fn requests_upstream_errors_cache_and_reloads_render() {
        let m = Metrics::new();
        m.record_request(200);
        m.record_request(403);
        m.record_request(404);
        m.record_request(503);
        m.record_upstream_error(Upstream::TrustServer, UpstreamFailure::Connect);
        m.record_trust_cache(true);
        m.record_trust_cache(false);
        m.record_trust_cache(true);
        m.record_policy_reload(false);
        m.record_content_cache(ContentKind::Blob, true);
        let text = m.render();
        for line in [
            "trustgate_requests_total{class=\"2xx\"} 1",
            "trustgate_requests_total{class=\"4xx\"} 2",
            "trustgate_requests_total{class=\"5xx\"} 1",
            "trustgate_upstream_errors_total{upstream=\"trust_server\",kind=\"connect\"} 1",
            "trustgate_upstream_errors_total{upstream=\"registry\",kind=\"connect\"} 0",
            "trustgate_trust_cache_lookups_total{result=\"hit\"} 2",
            "trustgate_policy_reloads_total{result=\"rejected\"} 1",
            "trustgate_content_cache_lookups_total{kind=\"blob\",result=\"hit\"} 1",
            "trustgate_content_cache_lookups_total{kind=\"manifest\",result=\"miss\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in\n{text}"
            );
        }
    }

    #[test]
    fn every_family_has_help_and_type_before_its_samples() {
        let m = Metrics::new();
        m.record_decision(Outcome::Allow, DecisionReason::Ok);
        let text = m.render();
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split(' ');
                declared.insert(parts.next().unwrap().to_string());
                assert_eq!(parts.next(), Some("counter"));
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(declared.contains(name), "sample before TYPE: {line}");
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<u64>().is_ok(), "{line}");
            }
        }
        assert_eq!(declared.len(), 7);
    }
}
