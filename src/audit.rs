//! The audit trail: exactly one structured event per pull decision, on the tracing target
//! `audit`, so operators can route it apart from the diagnostic log (e.g.
//! `RUST_LOG=info,audit=info` with JSON output). Recording a decision also counts it in
//! [`Metrics`], so the log and `/metrics` cannot disagree.

use std::net::SocketAddr;

use crate::metrics::{DecisionReason, Metrics, Outcome};

/// One decision. Absent optional fields are logged as empty strings so every event has the
/// same set of keys.
#[derive(Clone, Debug)]
pub struct AuditEvent<'a> {
    /// The peer that asked (the TCP peer; trustgate does not trust forwarding headers).
    pub client: Option<SocketAddr>,
    /// What was asked: `manifest`, `blob`, `tags/list` or `referrers`.
    pub request: &'a str,
    /// `registry/repository` as the client meant it.
    pub image: &'a str,
    pub tag: Option<&'a str>,
    /// The digest served or asked for (for a rewrite, the signed digest).
    pub digest: Option<&'a str>,
    /// The policy rule that applied.
    pub rule: &'a str,
    /// The signer role whose signature was accepted, or that was found but not accepted.
    pub role: Option<&'a str>,
    /// The policy verifier(s) that vouched (`release (cosign)`) or refused (`release`).
    pub verifier: Option<&'a str>,
    pub outcome: Outcome,
    pub reason: DecisionReason,
    /// The human-readable explanation sent to the client, if any.
    pub detail: Option<&'a str>,
}

/// Logs `event` on target `audit` (warn for refusals and audit-mode violations, info
/// otherwise) and counts it.
pub fn record(metrics: &Metrics, event: &AuditEvent<'_>) {
    metrics.record_decision(event.outcome, event.reason);
    let client = event.client.map(|a| a.to_string()).unwrap_or_default();
    let tag = event.tag.unwrap_or_default();
    let digest = event.digest.unwrap_or_default();
    let role = event.role.unwrap_or_default();
    let verifier = event.verifier.unwrap_or_default();
    let detail = event.detail.unwrap_or_default();
    let (outcome, reason) = (event.outcome.label(), event.reason.label());
    let request = event.request;
    match event.outcome {
        Outcome::Allow | Outcome::Rewrite => tracing::info!(
            target: "audit",
            client, request, image = event.image, tag, digest, rule = event.rule, role, verifier, outcome, reason,
            detail, "pull decision"
        ),
        Outcome::Deny | Outcome::AuditViolation => tracing::warn!(
            target: "audit",
            client, request, image = event.image, tag, digest, rule = event.rule, role, verifier, outcome, reason,
            detail, "pull decision"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(f: impl FnOnce()) -> Vec<serde_json::Value> {
        let buf = Captured::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn one_structured_event_per_decision_with_every_field() {
        let metrics = Metrics::new();
        let events = capture(|| {
            record(
                &metrics,
                &AuditEvent {
                    client: Some("127.0.0.1:40000".parse().unwrap()),
                    request: "manifest",
                    image: "registry.test/app",
                    tag: Some("1.0"),
                    digest: None,
                    rule: "policy.toml:12 registry.test/**",
                    role: None,
                    verifier: None,
                    outcome: Outcome::Deny,
                    reason: DecisionReason::TagNotSigned,
                    detail: Some("tag 1.0 of registry.test/app is not signed"),
                },
            )
        });
        assert_eq!(events.len(), 1, "{events:?}");
        let e = &events[0];
        assert_eq!(e["target"], "audit");
        assert_eq!(e["level"], "WARN");
        let f = &e["fields"];
        assert_eq!(f["client"], "127.0.0.1:40000");
        assert_eq!(f["request"], "manifest");
        assert_eq!(f["image"], "registry.test/app");
        assert_eq!(f["tag"], "1.0");
        assert_eq!(f["digest"], "");
        assert_eq!(f["rule"], "policy.toml:12 registry.test/**");
        assert_eq!(f["role"], "");
        assert_eq!(f["outcome"], "deny");
        assert_eq!(f["reason"], "tag_not_signed");
        assert_eq!(
            metrics.decision_count(Outcome::Deny, DecisionReason::TagNotSigned),
            1
        );
    }

    #[test]
    fn rewrites_log_the_signed_digest_and_role_at_info() {
        let metrics = Metrics::new();
        let events = capture(|| {
            record(
                &metrics,
                &AuditEvent {
                    client: None,
                    request: "manifest",
                    image: "registry.test/app",
                    tag: Some("latest"),
                    digest: Some("sha256:0123"),
                    rule: "default",
                    role: Some("targets/releases"),
                    verifier: Some("rules[0] (notary)"),
                    outcome: Outcome::Rewrite,
                    reason: DecisionReason::Ok,
                    detail: None,
                },
            )
        });
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["level"], "INFO");
        assert_eq!(events[0]["fields"]["digest"], "sha256:0123");
        assert_eq!(events[0]["fields"]["role"], "targets/releases");
        assert_eq!(events[0]["fields"]["outcome"], "rewrite");
        assert_eq!(
            metrics.decision_count(Outcome::Rewrite, DecisionReason::Ok),
            1
        );
    }
}
