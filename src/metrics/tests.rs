//! Unit tests of the metrics and their exposition.
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
        text.contains("trustgate_decisions_total{outcome=\"deny\",reason=\"tag_not_signed\"} 2\n"),
        "{text}"
    );
    assert!(text.contains("trustgate_decisions_total{outcome=\"rewrite\",reason=\"ok\"} 1\n"));
    assert!(
        !text.contains("reason=\"expired\""),
        "a lookup created a series"
    );
}

#[test]
fn counters_render_with_their_labels() {
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
    m.record_connection_refused(ConnectionRefusal::PeerLimit);
    let text = m.render();
    for line in [
        "trustgate_requests_total{class=\"2xx\"} 1",
        "trustgate_requests_total{class=\"4xx\"} 2",
        "trustgate_requests_total{class=\"5xx\"} 1",
        "trustgate_upstream_errors_total{upstream=\"trust_server\",failure=\"connect\"} 1",
        "trustgate_upstream_errors_total{upstream=\"registry\",failure=\"connect\"} 0",
        "trustgate_trust_cache_lookups_total{result=\"hit\"} 2",
        "trustgate_policy_reloads_total{result=\"rejected\"} 1",
        "trustgate_content_cache_lookups_total{kind=\"blob\",result=\"hit\"} 1",
        "trustgate_content_cache_lookups_total{kind=\"manifest\",result=\"miss\"} 0",
        "trustgate_connections_refused_total{reason=\"peer_limit\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in\n{text}"
        );
    }
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
}

#[test]
fn gauges_and_histograms() {
    let m = Metrics::new();
    {
        let _a = m.request_in_flight();
        let _b = m.request_in_flight();
        assert!(m.render().contains("trustgate_requests_in_flight 2\n"));
    }
    assert!(m.render().contains("trustgate_requests_in_flight 0\n"));
    m.observe_request(200, Duration::from_millis(3));
    m.observe_verification(VerifierSystem::Notary, Duration::from_millis(40));
    m.observe_upstream(Duration::from_millis(20));
    m.set_cache_sizes(1024, 77, 3);
    m.set_trust_expiry(Some(86_400.0), &[("corp".to_string(), 90_000)]);
    let text = m.render();
    for line in [
        "trustgate_request_duration_seconds_count{class=\"2xx\"} 1",
        "trustgate_verification_duration_seconds_count{system=\"notary\"} 1",
        "trustgate_upstream_request_duration_seconds_count 1",
        "trustgate_content_cache_bytes 1024",
        "trustgate_manifest_cache_bytes 77",
        "trustgate_tag_cache_entries 3",
        "trustgate_trust_expiry_seconds 86400.0",
        "trustgate_trust_server_expiry_seconds{trust_server=\"corp\"} 90000",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in\n{text}"
        );
    }
    // 3 ms falls in the 1 ms .. 2.5 ms .. 6.25 ms buckets: le=0.00625 has it, le=0.0025 not.
    assert!(
        text.contains("trustgate_request_duration_seconds_bucket{le=\"0.0025\",class=\"2xx\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("trustgate_request_duration_seconds_bucket{le=\"0.00625\",class=\"2xx\"} 1"),
        "{text}"
    );
}
