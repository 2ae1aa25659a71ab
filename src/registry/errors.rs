//! The OCI error envelope (`{"errors":[{"code","message","detail"}]}`, distribution-spec
//! "Error Codes") and the one place where an error becomes a status and a body.
//!
//! Every error says whose fault it is ([`Fault`]). [`RegistryError::parts`] is a single
//! exhaustive `match` with no wildcard arm, so a new error cannot be added without deciding
//! what the person who pulled will see. Messages name the upstream and the repository; they
//! never carry internal detail (file paths, socket errors) or credentials.

use std::time::Duration;

use http::StatusCode;
use serde::Serialize;

use super::reference::{Digest, ReferenceError};

/// Who caused a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The registry behind the proxy failed or misbehaved.
    Upstream,
    /// The client sent something invalid or unsupported.
    Downstream,
    /// A bug or local resource problem in the proxy itself.
    Internal,
    /// The policy refuses the image.
    Policy,
    /// Trust data could not vouch for the image.
    Trust,
}

/// Error codes from the distribution spec, plus `UNAVAILABLE`/`UNKNOWN` as docker/distribution
/// uses them for 5xx answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OciCode {
    BlobUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    TagInvalid,
    RangeInvalid,
    Unavailable,
    Unknown,
}

impl OciCode {
    pub fn as_str(self) -> &'static str {
        match self {
            OciCode::BlobUnknown => "BLOB_UNKNOWN",
            OciCode::DigestInvalid => "DIGEST_INVALID",
            OciCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            OciCode::ManifestInvalid => "MANIFEST_INVALID",
            OciCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            OciCode::NameInvalid => "NAME_INVALID",
            OciCode::NameUnknown => "NAME_UNKNOWN",
            OciCode::SizeInvalid => "SIZE_INVALID",
            OciCode::Unauthorized => "UNAUTHORIZED",
            OciCode::Denied => "DENIED",
            OciCode::Unsupported => "UNSUPPORTED",
            OciCode::TooManyRequests => "TOOMANYREQUESTS",
            OciCode::TagInvalid => "TAG_INVALID",
            OciCode::RangeInvalid => "RANGE_INVALID",
            OciCode::Unavailable => "UNAVAILABLE",
            OciCode::Unknown => "UNKNOWN",
        }
    }

    /// Reads a code an upstream sent back, so an upstream 404 keeps its meaning.
    pub fn from_wire(s: &str) -> Option<OciCode> {
        let all = [
            OciCode::BlobUnknown,
            OciCode::DigestInvalid,
            OciCode::ManifestBlobUnknown,
            OciCode::ManifestInvalid,
            OciCode::ManifestUnknown,
            OciCode::NameInvalid,
            OciCode::NameUnknown,
            OciCode::SizeInvalid,
            OciCode::Unauthorized,
            OciCode::Denied,
            OciCode::Unsupported,
            OciCode::TooManyRequests,
            OciCode::TagInvalid,
            OciCode::RangeInvalid,
            OciCode::Unavailable,
            OciCode::Unknown,
        ];
        all.into_iter().find(|c| c.as_str() == s)
    }

    /// First code in an upstream's OCI error body, if it has one we know.
    pub fn from_error_body(body: &[u8]) -> Option<OciCode> {
        #[derive(serde::Deserialize)]
        struct Env {
            errors: Vec<Item>,
        }
        #[derive(serde::Deserialize)]
        struct Item {
            code: String,
        }
        let env: Env = serde_json::from_slice(body).ok()?;
        env.errors.first().and_then(|i| OciCode::from_wire(&i.code))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    // ---- Downstream ----
    #[error(transparent)]
    InvalidReference(#[from] ReferenceError),
    #[error("no such endpoint: {path}")]
    NotFound { path: String },
    #[error("{method} is not supported: trustgate is a read-only proxy")]
    Unsupported { method: String },
    #[error("no upstream named {name:?} is configured")]
    UnknownUpstream { name: String },
    #[error("the request names no upstream and no default upstream is configured")]
    NoUpstream,
    #[error("invalid query parameter {param}: {reason}")]
    BadQuery { param: &'static str, reason: String },
    #[error("{failure}")]
    Unauthenticated {
        failure: crate::clientauth::AuthFailure,
    },
    #[error("{identity} may not use {image}: no [[client_auth.access]] entry of this trustgate grants it")]
    AccessDenied { identity: String, image: String },

    // ---- Upstream ----
    #[error("upstream {upstream} is unreachable (repository {repo})")]
    UpstreamUnreachable { upstream: String, repo: String },
    #[error("upstream {upstream} did not answer within {timeout:?} (repository {repo})")]
    UpstreamTimeout {
        upstream: String,
        repo: String,
        timeout: Duration,
    },
    #[error("upstream {upstream} answered {status} for repository {repo}")]
    UpstreamStatus {
        upstream: String,
        repo: String,
        status: StatusCode,
        code: Option<OciCode>,
    },
    #[error("upstream {upstream} is rate limiting requests for repository {repo}")]
    UpstreamTooManyRequests {
        upstream: String,
        repo: String,
        retry_after: Option<String>,
    },
    #[error("upstream {upstream} refused the proxy's credentials for repository {repo}")]
    UpstreamAuth { upstream: String, repo: String },
    #[error(
        "upstream {upstream} served a manifest for {repo} with digest {actual}, expected {expected}"
    )]
    ManifestDigestMismatch {
        upstream: String,
        repo: String,
        expected: Digest,
        actual: Digest,
    },
    #[error(
        "upstream {upstream} served a manifest for {repo} of {actual} bytes, expected {expected}"
    )]
    ManifestLengthMismatch {
        upstream: String,
        repo: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "upstream {upstream} served a manifest for {repo} larger than the limit of {limit} bytes"
    )]
    ManifestTooLarge {
        upstream: String,
        repo: String,
        limit: u64,
    },
    #[error("upstream {upstream} answered for {repo} with a Docker schema1 manifest, which trustgate does not serve (its digest covers only part of the bytes)")]
    ManifestSchema1 { upstream: String, repo: String },
    #[error("upstream {upstream} sent a broken response for {repo}")]
    UpstreamProtocol { upstream: String, repo: String },

    // ---- Policy / Trust (filled in by enforcement) ----
    #[error("policy rule {rule} refuses {image}: {reason}")]
    PolicyDenied {
        rule: String,
        image: String,
        reason: String,
    },
    #[error("trust data does not vouch for {image}: {reason}")]
    TrustRefused { image: String, reason: String },
    #[error("cannot verify {image} (policy rule {rule}): {reason}; retry when the trust server is reachable")]
    TrustUnavailable {
        image: String,
        rule: String,
        reason: String,
    },

    /// trustgate's own trust state could not be read or written; the detail is logged.
    #[error("cannot verify {image} (policy rule {rule}): {reason}")]
    TrustStateUnavailable {
        image: String,
        rule: String,
        reason: String,
    },

    // ---- Internal ----
    #[error("trustgate is busy: {what}; retry shortly")]
    Busy { what: &'static str },
    #[error("internal error")]
    Internal { context: String },
}

/// The pieces of an error response.
#[derive(Debug)]
pub struct ErrorParts {
    pub status: StatusCode,
    pub code: OciCode,
    pub message: String,
    pub fault: Fault,
}

impl RegistryError {
    /// The single mapping from an error to what the client sees.
    pub fn parts(&self) -> ErrorParts {
        use Fault::*;
        let msg = self.to_string();
        let (status, code, fault, message) = match self {
            RegistryError::InvalidReference(e) => {
                let code = match e {
                    ReferenceError::Name { .. } => OciCode::NameInvalid,
                    ReferenceError::Tag { .. } => OciCode::TagInvalid,
                    ReferenceError::Digest { .. } => OciCode::DigestInvalid,
                };
                (StatusCode::BAD_REQUEST, code, Downstream, msg)
            }
            RegistryError::NotFound { .. } => {
                (StatusCode::NOT_FOUND, OciCode::NameUnknown, Downstream, msg)
            }
            RegistryError::Unsupported { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                OciCode::Unsupported,
                Downstream,
                msg,
            ),
            RegistryError::UnknownUpstream { .. } | RegistryError::NoUpstream => {
                (StatusCode::NOT_FOUND, OciCode::NameUnknown, Downstream, msg)
            }
            RegistryError::BadQuery { .. } => (
                StatusCode::BAD_REQUEST,
                OciCode::Unsupported,
                Downstream,
                msg,
            ),
            RegistryError::Unauthenticated { .. } => (
                StatusCode::UNAUTHORIZED,
                OciCode::Unauthorized,
                Downstream,
                msg,
            ),
            // Authenticated, but not for this repository: 403, so the client does not retry
            // with other credentials of the same identity.
            RegistryError::AccessDenied { .. } => {
                (StatusCode::FORBIDDEN, OciCode::Denied, Downstream, msg)
            }
            RegistryError::UpstreamUnreachable { .. } => {
                (StatusCode::BAD_GATEWAY, OciCode::Unavailable, Upstream, msg)
            }
            RegistryError::UpstreamTimeout { .. } => (
                StatusCode::GATEWAY_TIMEOUT,
                OciCode::Unavailable,
                Upstream,
                msg,
            ),
            RegistryError::UpstreamStatus { status, code, .. } => {
                if status.is_client_error() {
                    let fallback = if *status == StatusCode::NOT_FOUND {
                        OciCode::NameUnknown
                    } else {
                        OciCode::Unknown
                    };
                    (*status, code.unwrap_or(fallback), Upstream, msg)
                } else {
                    (StatusCode::BAD_GATEWAY, OciCode::Unavailable, Upstream, msg)
                }
            }
            RegistryError::UpstreamTooManyRequests { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                OciCode::TooManyRequests,
                Upstream,
                msg,
            ),
            // A 401 here would make the client try to log in to the proxy; the fix is in the
            // proxy's configuration, so say "denied" and name the upstream.
            RegistryError::UpstreamAuth { .. } => {
                (StatusCode::FORBIDDEN, OciCode::Denied, Upstream, msg)
            }
            RegistryError::ManifestDigestMismatch { .. }
            | RegistryError::ManifestLengthMismatch { .. }
            | RegistryError::ManifestSchema1 { .. } => (
                StatusCode::BAD_GATEWAY,
                OciCode::ManifestInvalid,
                Upstream,
                msg,
            ),
            RegistryError::ManifestTooLarge { .. } => {
                (StatusCode::BAD_GATEWAY, OciCode::SizeInvalid, Upstream, msg)
            }
            RegistryError::UpstreamProtocol { .. } => {
                (StatusCode::BAD_GATEWAY, OciCode::Unavailable, Upstream, msg)
            }
            RegistryError::PolicyDenied { .. } => {
                (StatusCode::FORBIDDEN, OciCode::Denied, Policy, msg)
            }
            RegistryError::TrustRefused { .. } => {
                (StatusCode::FORBIDDEN, OciCode::Denied, Trust, msg)
            }
            // Trust could not be *established* (the server could not be asked): fail closed,
            // but say it is transient, so clients and operators retry rather than conclude
            // that the image is unsigned.
            RegistryError::TrustUnavailable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                OciCode::Unavailable,
                Trust,
                msg,
            ),
            RegistryError::TrustStateUnavailable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                OciCode::Unavailable,
                Internal,
                msg,
            ),
            // A bound on this process's memory was reached: transient, so 503 (clients retry).
            RegistryError::Busy { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                OciCode::Unavailable,
                Internal,
                msg,
            ),
            // `context` goes to the log only; the client learns nothing internal.
            RegistryError::Internal { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                OciCode::Unknown,
                Internal,
                "internal error in trustgate; see its log".to_string(),
            ),
        };
        ErrorParts {
            status,
            code,
            message,
            fault,
        }
    }

    pub fn fault(&self) -> Fault {
        self.parts().fault
    }

    /// Extra response headers this error carries (`Retry-After` on a rate limit).
    pub fn retry_after(&self) -> Option<&str> {
        match self {
            RegistryError::UpstreamTooManyRequests { retry_after, .. } => retry_after.as_deref(),
            _ => None,
        }
    }

    /// The JSON envelope body.
    pub fn envelope(&self) -> Vec<u8> {
        let p = self.parts();
        envelope_json(p.code, &p.message, fault_name(p.fault))
    }
}

fn fault_name(f: Fault) -> &'static str {
    match f {
        Fault::Upstream => "upstream",
        Fault::Downstream => "request",
        Fault::Internal => "proxy",
        Fault::Policy => "policy",
        Fault::Trust => "trust",
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    errors: [Item<'a>; 1],
}

#[derive(Serialize)]
struct Item<'a> {
    code: &'static str,
    message: &'a str,
    detail: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    source: &'a str,
}

fn envelope_json(code: OciCode, message: &str, source: &str) -> Vec<u8> {
    let env = Envelope {
        errors: [Item {
            code: code.as_str(),
            message,
            detail: Detail { source },
        }],
    };
    // Serializing these plain structs cannot fail; fall back to a fixed body just in case.
    serde_json::to_vec(&env).unwrap_or_else(|_| {
        br#"{"errors":[{"code":"UNKNOWN","message":"internal error","detail":null}]}"#.to_vec()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::reference::Tag;

    fn json(e: &RegistryError) -> serde_json::Value {
        serde_json::from_slice(&e.envelope()).unwrap()
    }

    #[test]
    fn envelope_has_code_message_detail() {
        let e = RegistryError::Unsupported {
            method: "PUT".into(),
        };
        let v = json(&e);
        assert_eq!(v["errors"][0]["code"], "UNSUPPORTED");
        assert!(v["errors"][0]["message"].as_str().unwrap().contains("PUT"));
        assert_eq!(v["errors"][0]["detail"]["source"], "request");
        assert_eq!(e.parts().status, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn grammar_errors_map_to_their_codes() {
        let e = RegistryError::from(Tag::parse("-bad").unwrap_err());
        assert_eq!(e.parts().code, OciCode::TagInvalid);
        assert_eq!(e.parts().status, StatusCode::BAD_REQUEST);
        let e = RegistryError::from(Digest::parse("sha256:x").unwrap_err());
        assert_eq!(e.parts().code, OciCode::DigestInvalid);
        let e = RegistryError::from(crate::registry::RepoName::parse("A").unwrap_err());
        assert_eq!(e.parts().code, OciCode::NameInvalid);
    }

    #[test]
    fn upstream_errors_keep_status_and_name_the_upstream() {
        let e = RegistryError::UpstreamStatus {
            upstream: "reg.example".into(),
            repo: "a/b".into(),
            status: StatusCode::NOT_FOUND,
            code: Some(OciCode::ManifestUnknown),
        };
        let p = e.parts();
        assert_eq!(
            (p.status, p.code),
            (StatusCode::NOT_FOUND, OciCode::ManifestUnknown)
        );
        assert!(p.message.contains("reg.example") && p.message.contains("a/b"));
        let e = RegistryError::UpstreamTimeout {
            upstream: "u".into(),
            repo: "r".into(),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(e.parts().status, StatusCode::GATEWAY_TIMEOUT);
        let e = RegistryError::UpstreamUnreachable {
            upstream: "u".into(),
            repo: "r".into(),
        };
        assert_eq!(e.parts().status, StatusCode::BAD_GATEWAY);
        let e = RegistryError::UpstreamTooManyRequests {
            upstream: "u".into(),
            repo: "r".into(),
            retry_after: Some("7".into()),
        };
        assert_eq!(e.parts().status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.retry_after(), Some("7"));
    }

    #[test]
    fn digest_mismatch_names_both_digests() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let e = RegistryError::ManifestDigestMismatch {
            upstream: "up".into(),
            repo: "r".into(),
            expected: a,
            actual: b,
        };
        let m = e.parts().message;
        assert!(m.contains(&a.to_string()) && m.contains(&b.to_string()) && m.contains("up"));
        assert_eq!(e.parts().status, StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn internal_errors_leak_nothing() {
        let e = RegistryError::Internal {
            context: "/secret/path password=hunter2".into(),
        };
        let body = String::from_utf8(e.envelope()).unwrap();
        assert!(
            !body.contains("secret") && !body.contains("hunter2"),
            "{body}"
        );
        assert_eq!(e.parts().status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn upstream_error_bodies_are_read() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"x"}]}"#;
        assert_eq!(
            OciCode::from_error_body(body),
            Some(OciCode::ManifestUnknown)
        );
        assert_eq!(OciCode::from_error_body(b"garbage"), None);
    }
}
