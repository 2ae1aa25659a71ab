//! cosign's `sha256-<hex>.sig` tags under a `signed` rule: the signature artifacts of an image
//! the rule lets through pass through trustgate, so `cosign verify`, or podman/skopeo with
//! `use-sigstore-attachments`, can check them again on the client side.
//!
//! Such a tag is served only when the digest it names may itself be pulled (digest pulls
//! allowed, or under `signed-only` reached through a verified tag), and only if it is a
//! signature artifact: an image manifest (not an index) whose every layer is a simple-signing
//! payload. A runnable image pushed under a `.sig` tag name is refused, so the name cannot
//! smuggle unsigned content past the rule. Its payload blobs become pullable under
//! `signed-only` (what `cosign verify` and containers/image read); nothing else it names does —
//! not its config, not its `subject` — since the artifact itself is unsigned.

use http::header::HeaderValue;
use http::Response;

use super::enforced::{judge_digest_pull, with_warning};
use super::manifest::{manifest_response, FetchedManifest};
use super::signature_io::UpstreamRepo;
use super::{AppState, ProxyBody, RequestCtx};
use crate::cosign::fetch::{FetchError, Registry};
use crate::cosign::{CosignLimits, SIMPLE_SIGNING_MEDIA_TYPE};
use crate::registry::{Digest, RegistryError, RepoName, Tag};

pub async fn serve_sig_tag(
    state: &AppState,
    ctx: &RequestCtx,
    repo: &RepoName,
    tag: &Tag,
    signed: &Digest,
) -> Result<Response<ProxyBody>, RegistryError> {
    let p = judge_digest_pull(state, ctx, repo, signed).await?;
    let upstream = UpstreamRepo { state, ctx, repo };
    let limit = CosignLimits::default().signature_manifest_max_bytes;
    let bytes = match upstream.manifest(tag.as_str(), limit).await {
        Ok(b) => b,
        Err(FetchError::NotFound) => {
            return Err(RegistryError::UpstreamStatus {
                upstream: ctx.upstream_name().to_string(),
                repo: repo.to_string(),
                status: http::StatusCode::NOT_FOUND,
                code: Some(crate::registry::errors::OciCode::ManifestUnknown),
            })
        }
        Err(FetchError::TooLarge { limit }) => {
            return Err(RegistryError::ManifestTooLarge {
                upstream: ctx.upstream_name().to_string(),
                repo: repo.to_string(),
                limit,
            })
        }
        Err(FetchError::Unavailable { .. }) => {
            return Err(RegistryError::UpstreamUnreachable {
                upstream: ctx.upstream_name().to_string(),
                repo: repo.to_string(),
            })
        }
    };
    let children = signature_artifact_blobs(&bytes).ok_or_else(|| RegistryError::PolicyDenied {
        rule: p.permit.rule().to_string(),
        image: format!("{}/{repo}:{tag}", ctx.upstream_name()),
        reason: format!(
            "{tag} is not a cosign signature artifact (an image manifest whose layers are all {SIMPLE_SIGNING_MEDIA_TYPE}); a tag of that name is served only as one"
        ),
    })?;
    state
        .enforcer
        .mark_reached_exactly(&p.registry, repo.as_str(), &children)
        .await;
    let m = FetchedManifest {
        digest: Digest::sha256_of(&bytes),
        media_type: media_type_of(&bytes).and_then(|t| HeaderValue::from_str(&t).ok()),
        bytes,
    };
    Ok(with_warning(manifest_response(&m, ctx.head()), &p.permit))
}

/// The payload (layer) digests of a signature artifact; `None` if `bytes` is anything else.
fn signature_artifact_blobs(bytes: &[u8]) -> Option<Vec<String>> {
    let m = oci_spec::image::ImageManifest::from_reader(bytes).ok()?;
    if m.layers().is_empty()
        || m.layers()
            .iter()
            .any(|l| l.media_type().to_string() != SIMPLE_SIGNING_MEDIA_TYPE)
    {
        return None;
    }
    Some(m.layers().iter().map(|l| l.digest().to_string()).collect())
}

fn media_type_of(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Typed>(bytes).ok()?.media_type
}

#[cfg(test)]
mod tests {
    use super::signature_artifact_blobs;

    #[test]
    fn only_simple_signing_manifests_are_signature_artifacts() {
        let d = |c: &str| format!("sha256:{}", c.repeat(64));
        let m = |layer_type: &str| {
            format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"{}"}},"layers":[{{"mediaType":"{layer_type}","size":3,"digest":"{}"}}],"subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":4,"digest":"{}"}}}}"#,
                d("a"),
                d("b"),
                d("c")
            )
        };
        let ok = m("application/vnd.dev.cosign.simplesigning.v1+json");
        // Neither the config nor the subject is made pullable.
        assert_eq!(signature_artifact_blobs(ok.as_bytes()), Some(vec![d("b")]));
        let image = m("application/vnd.oci.image.layer.v1.tar+gzip");
        assert_eq!(signature_artifact_blobs(image.as_bytes()), None);
        let index = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert_eq!(signature_artifact_blobs(index.as_bytes()), None);
    }
}
