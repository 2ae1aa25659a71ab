//! The enforced paths: every manifest and blob request passes the policy here before any
//! content is served. A tag that a `signed` rule governs is served only as the digest its
//! publisher signed ([`manifest::fetch_manifest_by_digest`] checks the bytes against that
//! digest and length); every decision leaves one audit event.

use bytes::Bytes;
use http::header::HeaderValue;
use http::Response;

use super::manifest::{self, FetchedManifest};
use super::signature_io::UpstreamRepo;
use super::{blob, listing, AppState, ProxyBody, RequestCtx};
use crate::audit::{self, AuditEvent};
use crate::cache::CachedManifest;
use crate::metrics::{ContentKind, DecisionReason, Outcome};
use crate::policy::{Decision, Permit, Refusal, TagVerdict};
use crate::registry::routes::Endpoint;
use crate::registry::{Digest, RegistryError, RepoName, Tag};

/// `GET/HEAD /v2/<repo>/manifests/<tag>`.
pub async fn serve_tag(
    state: &AppState,
    ctx: &RequestCtx,
    repo: &RepoName,
    tag: &Tag,
) -> Result<Response<ProxyBody>, RegistryError> {
    let registry = ctx.upstream_name().to_string();
    let image = format!("{registry}/{repo}");
    if let Some(signed) = crate::cosign::signed_digest_of_tag(tag.as_str()) {
        let d = state.enforcer.decide(&registry, repo.as_str());
        if matches!(d.requirement(), crate::policy::Requirement::Signed(_)) {
            return super::signature_tags::serve_sig_tag(state, ctx, repo, tag, &signed).await;
        }
    }
    let upstream = UpstreamRepo { state, ctx, repo };
    let (decision, verdict) = state
        .enforcer
        .tag(&registry, repo.as_str(), tag.as_str(), &upstream)
        .await;
    match verdict {
        TagVerdict::Refuse(r) => {
            refused(
                state,
                ctx,
                &Subject {
                    image: &image,
                    tag: Some(tag.as_str()),
                    digest: None,
                    decision: &decision,
                },
                None,
                &r,
            );
            Err(refusal_error(&image, Some(tag.as_str()), r))
        }
        TagVerdict::Passthrough(permit) => {
            let resp = manifest::serve_tag_manifest(state, ctx, repo, tag, &permit).await?;
            let digest = resp
                .headers()
                .get(super::DIGEST_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            allowed(
                state,
                ctx,
                &Subject {
                    image: &image,
                    tag: Some(tag.as_str()),
                    digest: digest.as_deref(),
                    decision: &decision,
                },
                &permit,
                None,
            );
            Ok(with_warning(resp, &permit))
        }
        TagVerdict::Signed(permit, target) => {
            let digest = Digest::parse(target.digest()).map_err(|_| RegistryError::Internal {
                context: format!(
                    "a verifier returned a non-canonical digest {}",
                    target.digest()
                ),
            })?;
            let (roles, verifiers) = (target.identities(), target.verifiers());
            let m = fetch_verified(state, ctx, repo, &digest, target.length()).await;
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    if matches!(
                        e,
                        RegistryError::ManifestDigestMismatch { .. }
                            | RegistryError::ManifestLengthMismatch { .. }
                    ) {
                        let r = Refusal {
                            rule: permit.rule().to_string(),
                            reason: DecisionReason::ContentMismatch,
                            message: e.to_string(),
                            unavailable: false,
                            verifier: Some(verifiers.clone()),
                        };
                        refused(
                            state,
                            ctx,
                            &Subject {
                                image: &image,
                                tag: Some(tag.as_str()),
                                digest: Some(target.digest()),
                                decision: &decision,
                            },
                            Some(&roles),
                            &r,
                        );
                    }
                    return Err(e);
                }
            };
            state
                .enforcer
                .mark_reached(&registry, repo.as_str(), target.digest(), &m.bytes)
                .await;
            allowed(
                state,
                ctx,
                &Subject {
                    image: &image,
                    tag: Some(tag.as_str()),
                    digest: Some(target.digest()),
                    decision: &decision,
                },
                &permit,
                Some((&roles, &verifiers)),
            );
            let mut resp = with_warning(manifest::manifest_response(&m, ctx.head()), &permit);
            if let Some(until) = target.held_until() {
                // Serving on held trust data is bounded by that data's expiry, and said out loud.
                let text = format!(
                    "299 trustgate \"trust server unreachable; verified from held trust data valid until {}\"",
                    until
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default()
                );
                if let Ok(v) = HeaderValue::from_str(&text) {
                    resp.headers_mut().append(http::header::WARNING, v);
                }
            }
            Ok(resp)
        }
    }
}

/// A pull by digest that the policy allows: the decision and the permit, or the refusal
/// (already audited) as an error.
pub(super) struct DigestPull {
    pub(super) registry: String,
    image: String,
    digest: String,
    decision: Decision,
    pub(super) permit: Permit,
}

pub(super) async fn judge_digest_pull(
    state: &AppState,
    ctx: &RequestCtx,
    repo: &RepoName,
    digest: &Digest,
) -> Result<DigestPull, RegistryError> {
    let registry = ctx.upstream_name().to_string();
    let image = format!("{registry}/{repo}");
    let d = digest.to_string();
    let (decision, verdict) = state.enforcer.digest(&registry, repo.as_str(), &d).await;
    let permit = match verdict {
        TagVerdict::Passthrough(p) | TagVerdict::Signed(p, _) => p,
        TagVerdict::Refuse(r) => {
            refused(
                state,
                ctx,
                &Subject {
                    image: &image,
                    tag: None,
                    digest: Some(&d),
                    decision: &decision,
                },
                None,
                &r,
            );
            return Err(refusal_error(&image, None, r));
        }
    };
    Ok(DigestPull {
        registry,
        image,
        digest: d,
        decision,
        permit,
    })
}

/// `GET/HEAD /v2/<repo>/manifests/<digest>`.
pub async fn serve_manifest_digest(
    state: &AppState,
    ctx: &RequestCtx,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Response<ProxyBody>, RegistryError> {
    let p = judge_digest_pull(state, ctx, repo, digest).await?;
    let m = fetch_verified(state, ctx, repo, digest, None).await?;
    // A child of a signed index is itself vouched for: so is what it references.
    if state
        .enforcer
        .was_reached(&p.registry, repo.as_str(), &p.digest)
        .await
    {
        state
            .enforcer
            .mark_reached(&p.registry, repo.as_str(), &p.digest, &m.bytes)
            .await;
    }
    allowed(
        state,
        ctx,
        &Subject {
            image: &p.image,
            tag: None,
            digest: Some(&p.digest),
            decision: &p.decision,
        },
        &p.permit,
        None,
    );
    Ok(with_warning(
        manifest::manifest_response(&m, ctx.head()),
        &p.permit,
    ))
}

/// `GET/HEAD /v2/<repo>/blobs/<digest>`. Only refusals and audit violations are logged as
/// decisions: a pull's many layer requests would otherwise drown the audit trail.
pub async fn serve_blob(
    state: &AppState,
    ctx: &RequestCtx,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Response<ProxyBody>, RegistryError> {
    let p = judge_digest_pull(state, ctx, repo, digest).await?;
    if p.permit.warning().is_some() {
        allowed(
            state,
            ctx,
            &Subject {
                image: &p.image,
                tag: None,
                digest: Some(&p.digest),
                decision: &p.decision,
            },
            &p.permit,
            None,
        );
    }
    let resp = blob::serve_blob(state, ctx, repo, digest, &p.permit).await?;
    Ok(with_warning(resp, &p.permit))
}

/// `GET/HEAD /v2/<repo>/tags/list`: judged like a pull of the repository, since the
/// upstream is asked with trustgate's credentials; every listing decision is audited.
pub async fn serve_tags_list(
    state: &AppState,
    ctx: &RequestCtx,
    repo: &RepoName,
    n: Option<u32>,
    last: Option<&str>,
) -> Result<Response<ProxyBody>, RegistryError> {
    let permit = judge_listing(state, ctx, repo, None)?;
    let resp = listing::serve_tags_list(state, ctx, repo, n, last, &permit).await?;
    Ok(with_warning(resp, &permit))
}

/// `GET/HEAD /v2/<repo>/referrers/<digest>`: as [`serve_tags_list`].
pub async fn serve_referrers(
    state: &AppState,
    ctx: &RequestCtx,
    repo: &RepoName,
    digest: &Digest,
    artifact_type: Option<&str>,
) -> Result<Response<ProxyBody>, RegistryError> {
    let d = digest.to_string();
    let permit = judge_listing(state, ctx, repo, Some(&d))?;
    let resp = listing::serve_referrers(state, ctx, repo, digest, artifact_type, &permit).await?;
    Ok(with_warning(resp, &permit))
}

/// The policy's verdict on listing `repo` (the audit event names the subject `digest` of a
/// referrers request): the permit, or the refusal (audited) as an error.
fn judge_listing(
    state: &AppState,
    ctx: &RequestCtx,
    repo: &RepoName,
    digest: Option<&str>,
) -> Result<Permit, RegistryError> {
    let registry = ctx.upstream_name().to_string();
    let image = format!("{registry}/{repo}");
    let (decision, verdict) = state.enforcer.listing(&registry, repo.as_str());
    let subject = Subject {
        image: &image,
        tag: None,
        digest,
        decision: &decision,
    };
    match verdict {
        TagVerdict::Passthrough(p) | TagVerdict::Signed(p, _) => {
            allowed(state, ctx, &subject, &p, None);
            Ok(p)
        }
        TagVerdict::Refuse(r) => {
            refused(state, ctx, &subject, None, &r);
            Err(refusal_error(&image, None, r))
        }
    }
}

/// The manifest `repo@digest`: from the in-memory verified-manifest cache, else from the
/// on-disk content store (re-hashed as it is read), else fetched and checked by
/// [`manifest::fetch_manifest_by_digest`] and then stored in both. Content addressed data
/// cannot be stale, so a held manifest is served without the upstream: this is what keeps an
/// air-gapped mirror serving after a restart. Held content is served only under a repository
/// the upstream confirmed holds it (`registry/repository` scope), as a registry links blobs to
/// repositories: otherwise content pulled under one rule could be fetched by digest under
/// another (a `reject`ed image through an `allow`ed repository name).
async fn fetch_verified(
    state: &AppState,
    ctx: &RequestCtx,
    repo: &RepoName,
    digest: &Digest,
    expected_len: Option<u64>,
) -> Result<FetchedManifest, RegistryError> {
    let m = fetch_verified_bytes(state, ctx, repo, digest, expected_len).await?;
    // The sizes its config and layers must have, so a blob answer announcing another
    // length is refused before anything is sent (see `blob::serve_blob`).
    let scope = format!("{}/{}", ctx.upstream_name(), repo);
    state.blob_sizes.learn(&scope, &m.bytes);
    Ok(m)
}

async fn fetch_verified_bytes(
    state: &AppState,
    ctx: &RequestCtx,
    repo: &RepoName,
    digest: &Digest,
    expected_len: Option<u64>,
) -> Result<FetchedManifest, RegistryError> {
    let scope = format!("{}/{}", ctx.upstream_name(), repo);
    let key = digest.to_string();
    let len_ok = |n: usize| expected_len.is_none_or(|l| l == n as u64);
    if let Some(c) = state.manifests.get(&scope, &key).await {
        if len_ok(c.bytes.len()) {
            return Ok(FetchedManifest {
                bytes: c.bytes,
                digest: *digest,
                media_type: HeaderValue::from_str(&c.media_type).ok(),
            });
        }
    }
    if let Some(store) = &state.content {
        let limit = state.config.limits.manifest_max_bytes;
        // Only under a repository the upstream confirmed holds it (see DiskStore::link).
        let held = if store.is_linked(&scope, digest).await {
            store.get_manifest(digest, limit).await
        } else {
            None
        };
        state
            .metrics
            .record_content_cache(ContentKind::Manifest, held.is_some());
        if let Some(m) = held.filter(|m| len_ok(m.bytes.len())) {
            let media_type = m.media_type.unwrap_or_default();
            remember(state, ctx, &scope, &key, &media_type, &m.bytes).await;
            return Ok(FetchedManifest {
                bytes: m.bytes,
                digest: *digest,
                media_type: HeaderValue::from_str(&media_type)
                    .ok()
                    .filter(|v| !v.is_empty()),
            });
        }
    }
    let m = manifest::fetch_manifest_by_digest(state, ctx, repo, digest, expected_len).await?;
    let media_type = m
        .media_type
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    remember(state, ctx, &scope, &key, &media_type, &m.bytes).await;
    if let Some(store) = &state.content {
        let t = (!media_type.is_empty()).then_some(media_type.as_str());
        if let Err(e) = store.put_manifest(digest, t, &m.bytes).await {
            tracing::error!(request_id = %ctx.id, error = %e, "content cache: manifest not stored");
        }
        store.link(&scope, digest).await;
    }
    Ok(m)
}

/// Puts verified manifest bytes into the in-memory cache.
async fn remember(
    state: &AppState,
    ctx: &RequestCtx,
    scope: &str,
    key: &str,
    media_type: &str,
    bytes: &Bytes,
) {
    let cached = CachedManifest {
        media_type: media_type.to_string(),
        bytes: bytes.clone(),
    };
    if let Err(e) = state.manifests.insert(scope, key, cached).await {
        tracing::error!(request_id = %ctx.id, error = %e, "manifest cache refused verified bytes");
    }
}

fn refusal_error(image: &str, tag: Option<&str>, r: Refusal) -> RegistryError {
    let image = match tag {
        Some(t) => format!("{image}:{t}"),
        None => image.to_string(),
    };
    if r.reason == DecisionReason::TrustStateError {
        RegistryError::TrustStateUnavailable {
            image,
            rule: r.rule,
            reason: r.message,
        }
    } else if r.unavailable {
        RegistryError::TrustUnavailable {
            image,
            rule: r.rule,
            reason: r.message,
        }
    } else {
        RegistryError::PolicyDenied {
            rule: r.rule,
            image,
            reason: r.message,
        }
    }
}

/// `Warning: 299 trustgate "<text>"` (RFC 9111 §5.5) when an audit-mode rule was violated.
pub(super) fn with_warning(mut resp: Response<ProxyBody>, permit: &Permit) -> Response<ProxyBody> {
    if let Some(w) = permit.warning() {
        resp.headers_mut()
            .append(http::header::WARNING, warning_value(w));
    }
    resp
}

/// Longest `Warning` value sent (the distribution spec bounds the header at 4096 bytes).
const MAX_WARNING: usize = 4000;

/// `299 trustgate "<text>"` as a header value. Header values are ASCII here: a rule message
/// with "—" or "é" used to make the whole warning vanish (PROXY-REVIEW D21), so non-ASCII
/// characters are spelled in ASCII, quotes and controls replaced, and the text bounded.
fn warning_value(text: &str) -> HeaderValue {
    let mut out = String::with_capacity(text.len().min(MAX_WARNING) + 16);
    out.push_str("299 trustgate \"");
    for c in text.chars() {
        let sub: &str = match c {
            '"' | '\\' => "'",
            '\u{2013}' | '\u{2014}' => "-",
            '\u{2018}' | '\u{2019}' => "'",
            '\u{201c}' | '\u{201d}' => "'",
            '\u{2026}' => "...",
            c if c.is_ascii() && !c.is_ascii_control() => {
                out.push(c);
                ""
            }
            _ => "?",
        };
        out.push_str(sub);
        if out.len() >= MAX_WARNING {
            out.truncate(MAX_WARNING);
            out.push_str("...");
            break;
        }
    }
    out.push('"');
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static("299 trustgate \"-\""))
}

/// What one decision was about, for its audit event.
struct Subject<'a> {
    image: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
    decision: &'a Decision,
}

/// The audit event for a pull that is served: a rewrite when verifiers vouched for it
/// (`vouched` = the roles or keys, and the verifiers), an audit violation when an audit-mode
/// rule let it through.
fn allowed(
    state: &AppState,
    ctx: &RequestCtx,
    s: &Subject<'_>,
    permit: &Permit,
    vouched: Option<(&str, &str)>,
) {
    let (outcome, detail) = match permit.warning() {
        Some(w) => (Outcome::AuditViolation, Some(w)),
        None if vouched.is_some() => (Outcome::Rewrite, None),
        None => (Outcome::Allow, None),
    };
    let (role, verifier) = (vouched.map(|v| v.0), vouched.map(|v| v.1));
    record(
        state,
        ctx,
        s,
        (role, verifier),
        outcome,
        permit.reason(),
        detail,
    );
}

/// The audit event for a refused pull.
fn refused(state: &AppState, ctx: &RequestCtx, s: &Subject<'_>, role: Option<&str>, r: &Refusal) {
    record(
        state,
        ctx,
        s,
        (role, r.verifier.as_deref()),
        Outcome::Deny,
        r.reason,
        Some(&r.message),
    );
}

fn record(
    state: &AppState,
    ctx: &RequestCtx,
    s: &Subject<'_>,
    (role, verifier): (Option<&str>, Option<&str>),
    outcome: Outcome,
    reason: DecisionReason,
    detail: Option<&str>,
) {
    audit::record(
        &state.metrics,
        &AuditEvent {
            client: Some(ctx.peer),
            request: request_kind(&ctx.route.endpoint),
            image: s.image,
            tag: s.tag,
            digest: s.digest,
            rule: s.decision.rule_name(),
            role,
            verifier,
            outcome,
            reason,
            detail,
        },
    );
}

/// What was asked, for the audit event.
fn request_kind(e: &Endpoint) -> &'static str {
    match e {
        Endpoint::ApiBase => "api",
        Endpoint::Manifest { .. } => "manifest",
        Endpoint::Blob { .. } => "blob",
        Endpoint::TagsList { .. } => "tags/list",
        Endpoint::Referrers { .. } => "referrers",
    }
}

#[cfg(test)]
mod warning_tests {
    use super::warning_value;

    #[test]
    fn non_ascii_messages_keep_their_warning() {
        let v = warning_value("audit: rule “org” refuses it — ask #platform… (é)");
        assert_eq!(
            v.to_str().unwrap(),
            "299 trustgate \"audit: rule 'org' refuses it - ask #platform... (?)\""
        );
        let long = "x".repeat(10_000);
        assert!(warning_value(&long).len() <= 4100);
        assert_eq!(
            warning_value("a \"quoted\" \\ line\nbreak")
                .to_str()
                .unwrap(),
            "299 trustgate \"a 'quoted' ' line?break\""
        );
    }
}
