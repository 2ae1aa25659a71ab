//! `/metrics`: counters, gauges and histograms, exposed with `prometheus-client` (the
//! Prometheus project's Rust library) in the OpenMetrics text format, which Prometheus scrapes
//! natively.
//!
//! Every label takes its value from a closed enum, so the number of series is fixed at compile
//! time: no image name, tag, client address or error string ever becomes a label (those go to
//! the audit log, see [`crate::audit`]).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Content-Type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

mod labels;

pub use labels::*;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    outcome: Outcome,
    reason: DecisionReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    class: StatusClass,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: Upstream,
    failure: UpstreamFailure,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    result: Lookup,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContentLabels {
    kind: ContentKind,
    result: Lookup,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: ReloadResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerificationLabels {
    system: VerifierSystem,
    result: VerificationResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SystemLabels {
    system: VerifierSystem,
}

/// A trust server by the name the policy gives it (bounded by the policy file).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrustServerLabels {
    trust_server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: ConnectionRefusal,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 1 ms to about 100 s: a manifest from memory takes well under a
/// millisecond, a cold trust resolution against a slow server tens of seconds.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.5, 13))
}

/// All of trustgate's metrics. Cheap to update from any task; share it in an `Arc`.
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    requests: Family<ClassLabels, Counter>,
    request_seconds: Histograms<ClassLabels>,
    requests_in_flight: Gauge,
    connections_open: Gauge,
    connections_refused: Family<RefusalLabels, Counter>,
    upstream_errors: Family<UpstreamLabels, Counter>,
    trust_cache: Family<LookupLabels, Counter>,
    policy_reloads: Family<ReloadLabels, Counter>,
    content_cache: Family<ContentLabels, Counter>,
    verifications: Family<VerificationLabels, Counter>,
    verification_seconds: Histograms<SystemLabels>,
    upstream_seconds: Histogram,
    content_cache_bytes: Gauge<i64>,
    manifest_cache_bytes: Gauge<i64>,
    tag_cache_entries: Gauge<i64>,
    trust_expiry_seconds: Gauge<f64, AtomicU64>,
    trust_server_expiry_seconds: Family<TrustServerLabels, Gauge<i64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let m = Metrics {
            registry: Registry::default(),
            decisions: Family::default(),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            requests_in_flight: Gauge::default(),
            connections_open: Gauge::default(),
            connections_refused: Family::default(),
            upstream_errors: Family::default(),
            trust_cache: Family::default(),
            policy_reloads: Family::default(),
            content_cache: Family::default(),
            verifications: Family::default(),
            verification_seconds: Family::new_with_constructor(latency_histogram),
            upstream_seconds: latency_histogram(),
            content_cache_bytes: Gauge::default(),
            manifest_cache_bytes: Gauge::default(),
            tag_cache_entries: Gauge::default(),
            trust_expiry_seconds: Gauge::default(),
            trust_server_expiry_seconds: Family::default(),
        };
        // Families other than decisions (most outcome × reason pairs cannot occur) start
        // complete, so a dashboard sees a 0 before the first event, not an absent series.
        for &class in StatusClass::ALL {
            let _ = m.requests.get_or_create(&ClassLabels { class });
        }
        for &upstream in Upstream::ALL {
            for &failure in UpstreamFailure::ALL {
                let _ = m
                    .upstream_errors
                    .get_or_create(&UpstreamLabels { upstream, failure });
            }
        }
        for &result in Lookup::ALL {
            let _ = m.trust_cache.get_or_create(&LookupLabels { result });
            for &kind in ContentKind::ALL {
                let _ = m
                    .content_cache
                    .get_or_create(&ContentLabels { kind, result });
            }
        }
        for &result in ReloadResult::ALL {
            let _ = m.policy_reloads.get_or_create(&ReloadLabels { result });
        }
        for &system in VerifierSystem::ALL {
            for &result in VerificationResult::ALL {
                let _ = m
                    .verifications
                    .get_or_create(&VerificationLabels { system, result });
            }
        }
        for &reason in ConnectionRefusal::ALL {
            let _ = m
                .connections_refused
                .get_or_create(&RefusalLabels { reason });
        }
        m.register()
    }

    fn register(mut self) -> Self {
        let r = &mut self.registry;
        r.register(
            "trustgate_decisions",
            "Pull decisions by outcome and reason",
            self.decisions.clone(),
        );
        r.register(
            "trustgate_requests",
            "HTTP requests answered, by status class",
            self.requests.clone(),
        );
        r.register(
            "trustgate_request_duration_seconds",
            "Time from a request's arrival to its response headers, by status class",
            self.request_seconds.clone(),
        );
        r.register(
            "trustgate_requests_in_flight",
            "Requests whose response has not been completely sent",
            self.requests_in_flight.clone(),
        );
        r.register(
            "trustgate_connections_open",
            "Client connections open on the registry listeners",
            self.connections_open.clone(),
        );
        r.register(
            "trustgate_connections_refused",
            "Client connections closed before being served",
            self.connections_refused.clone(),
        );
        r.register(
            "trustgate_upstream_errors",
            "Failed calls to registries and trust servers",
            self.upstream_errors.clone(),
        );
        r.register(
            "trustgate_upstream_request_duration_seconds",
            "Time until a registry's response headers arrive",
            self.upstream_seconds.clone(),
        );
        r.register(
            "trustgate_trust_cache_lookups",
            "Verified-tag cache lookups",
            self.trust_cache.clone(),
        );
        r.register(
            "trustgate_policy_reloads",
            "Policy load attempts; rejected ones leave the previous policy in force",
            self.policy_reloads.clone(),
        );
        r.register(
            "trustgate_content_cache_lookups",
            "On-disk content cache lookups (verified manifests and blobs by digest)",
            self.content_cache.clone(),
        );
        r.register(
            "trustgate_verifications",
            "Answers of policy verifiers, by signature system and result",
            self.verifications.clone(),
        );
        r.register(
            "trustgate_verification_duration_seconds",
            "Time a verifier took to answer for a tag (cached answers included)",
            self.verification_seconds.clone(),
        );
        r.register(
            "trustgate_content_cache_bytes",
            "Bytes of verified content held on disk",
            self.content_cache_bytes.clone(),
        );
        r.register(
            "trustgate_manifest_cache_bytes",
            "Bytes of verified manifests held in memory",
            self.manifest_cache_bytes.clone(),
        );
        r.register(
            "trustgate_tag_cache_entries",
            "Verified tag results held in memory",
            self.tag_cache_entries.clone(),
        );
        r.register(
            "trustgate_trust_expiry_seconds",
            "Seconds until the earliest expiry among held trust data (metadata and root certificates); negative once expired, absent data reads as a large value",
            self.trust_expiry_seconds.clone(),
        );
        r.register(
            "trustgate_trust_server_expiry_seconds",
            "As trustgate_trust_expiry_seconds, per trust server (by its policy name)",
            self.trust_server_expiry_seconds.clone(),
        );
        self.trust_expiry_seconds.set(f64::from(u32::MAX));
        self
    }

    /// Counts one decision. Call it through [`crate::audit::record`], which also logs it, so
    /// the log and the counters cannot disagree.
    pub fn record_decision(&self, outcome: Outcome, reason: DecisionReason) {
        self.decisions
            .get_or_create(&DecisionLabels { outcome, reason })
            .inc();
    }

    pub fn decision_count(&self, outcome: Outcome, reason: DecisionReason) -> u64 {
        self.decisions
            .get(&DecisionLabels { outcome, reason })
            .map_or(0, |c| c.get())
    }

    /// Counts one answered request by the class of its status.
    pub fn record_request(&self, status: u16) {
        let class = StatusClass::of(status);
        self.requests.get_or_create(&ClassLabels { class }).inc();
    }

    /// Times one request, arrival to response headers.
    pub fn observe_request(&self, status: u16, took: Duration) {
        let class = StatusClass::of(status);
        self.request_seconds
            .get_or_create(&ClassLabels { class })
            .observe(took.as_secs_f64());
    }

    /// Held while a response is being sent: the in-flight gauge counts it.
    pub fn request_in_flight(&self) -> InFlight {
        self.requests_in_flight.inc();
        InFlight(self.requests_in_flight.clone())
    }

    /// Held while a client connection is open.
    pub fn connection_open(&self) -> InFlight {
        self.connections_open.inc();
        InFlight(self.connections_open.clone())
    }

    pub fn record_connection_refused(&self, reason: ConnectionRefusal) {
        self.connections_refused
            .get_or_create(&RefusalLabels { reason })
            .inc();
    }

    pub fn record_upstream_error(&self, upstream: Upstream, failure: UpstreamFailure) {
        self.upstream_errors
            .get_or_create(&UpstreamLabels { upstream, failure })
            .inc();
    }

    /// Times one registry request until its response headers.
    pub fn observe_upstream(&self, took: Duration) {
        self.upstream_seconds.observe(took.as_secs_f64());
    }

    /// Counts a verified-tag cache lookup.
    pub fn record_trust_cache(&self, hit: bool) {
        let result = if hit { Lookup::Hit } else { Lookup::Miss };
        self.trust_cache
            .get_or_create(&LookupLabels { result })
            .inc();
    }

    /// Counts an on-disk content cache lookup.
    pub fn record_content_cache(&self, kind: ContentKind, hit: bool) {
        let result = if hit { Lookup::Hit } else { Lookup::Miss };
        self.content_cache
            .get_or_create(&ContentLabels { kind, result })
            .inc();
    }

    pub fn content_cache_count(&self, kind: ContentKind, hit: bool) -> u64 {
        let result = if hit { Lookup::Hit } else { Lookup::Miss };
        self.content_cache
            .get(&ContentLabels { kind, result })
            .map_or(0, |c| c.get())
    }

    /// Counts one verifier's answer (a rule with several verifiers asks each in turn).
    pub fn record_verification(&self, system: VerifierSystem, result: VerificationResult) {
        self.verifications
            .get_or_create(&VerificationLabels { system, result })
            .inc();
    }

    /// Times one verifier's answer for one tag.
    pub fn observe_verification(&self, system: VerifierSystem, took: Duration) {
        self.verification_seconds
            .get_or_create(&SystemLabels { system })
            .observe(took.as_secs_f64());
    }

    pub fn verification_count(&self, system: VerifierSystem, result: VerificationResult) -> u64 {
        self.verifications
            .get(&VerificationLabels { system, result })
            .map_or(0, |c| c.get())
    }

    /// Counts a policy (re)load attempt; a refused reload leaves the old policy in force.
    pub fn record_policy_reload(&self, accepted: bool) {
        let result = if accepted {
            ReloadResult::Accepted
        } else {
            ReloadResult::Rejected
        };
        self.policy_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
    }

    pub fn policy_reload_count(&self, accepted: bool) -> u64 {
        let result = if accepted {
            ReloadResult::Accepted
        } else {
            ReloadResult::Rejected
        };
        self.policy_reloads
            .get(&ReloadLabels { result })
            .map_or(0, |c| c.get())
    }

    /// The sizes of the caches, sampled when `/metrics` is read.
    pub fn set_cache_sizes(&self, content_bytes: u64, manifest_bytes: u64, tag_entries: u64) {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.content_cache_bytes.set(clamp(content_bytes));
        self.manifest_cache_bytes.set(clamp(manifest_bytes));
        self.tag_cache_entries.set(clamp(tag_entries));
    }

    /// Seconds until the earliest expiry among held trust data (`None`: nothing held, which
    /// reads as a large value so that "less than 7 days" alerts stay quiet), and the same per
    /// trust server the process has used.
    pub fn set_trust_expiry(&self, seconds: Option<f64>, per_server: &[(String, i64)]) {
        self.trust_expiry_seconds
            .set(seconds.unwrap_or(f64::from(u32::MAX)));
        self.trust_server_expiry_seconds.clear();
        for (server, s) in per_server {
            self.trust_server_expiry_seconds
                .get_or_create(&TrustServerLabels {
                    trust_server: server.clone(),
                })
                .set(*s);
        }
    }

    /// The exposition text (OpenMetrics).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Decrements its gauge when dropped.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests;
