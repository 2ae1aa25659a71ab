//! A Notation signature stored in the real docker-registry the way `notation sign` stores it
//! where a registry has no referrers API (the `sha256-<hex>` tag-schema fallback), found and
//! verified with the discovery helpers and the verifier — including a signature manifest that
//! points at another image, stored next to it.

mod notation_common;
mod support;

use notation_common::*;
use support::notation::push_signature;
use support::registry::{Pusher, Registry, OCI_INDEX, OCI_MANIFEST};
use trustgate::notation::discover;
use trustgate::notation::TargetDescriptor;

async fn get(http: &reqwest::Client, url: String, accept: &str) -> Vec<u8> {
    let r = http.get(url).header("accept", accept).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn tag_schema_signature_round_trips_through_the_real_registry() {
    let reg = Registry::start();
    let pusher = Pusher::new(&reg);
    let http = reqwest::Client::new();
    let repo = "team/app";
    let image = pusher.image(repo, "v1", true, 7, 512, "amd64").await;
    let other = pusher.image(repo, "v2", true, 8, 512, "amd64").await;
    let target = TargetDescriptor {
        media_type: OCI_MANIFEST.into(),
        digest: image.digest.clone(),
        size: image.manifest.len() as u64,
    };
    let other_target = TargetDescriptor {
        media_type: OCI_MANIFEST.into(),
        digest: other.digest.clone(),
        size: other.manifest.len() as u64,
    };
    let ca1 = ca("Test CA");
    let s = leaf(&ca1, LeafSpec::default());
    let trusted = ca_store(vec![ca1.cert.der().to_vec()]);
    let ca_print = trustgate::notation::truststore::thumbprint(ca1.cert.der());

    // A COSE signature for the image; a JWS one for the *other* image, stored under this
    // image's tag-schema tag as a confused or hostile pusher would; and one by a stranger
    // whose thumbprint no store holds.
    let good = push_signature(
        &pusher,
        repo,
        &target,
        cose(&s, &payload_for(&target), &Headers::default()),
        "application/cose",
        &ca_print,
    )
    .await;
    let misplaced = push_signature(
        &pusher,
        repo,
        &other_target,
        jws(&s, &payload_for(&other_target), &Headers::default()),
        "application/jose+json",
        &ca_print,
    )
    .await;
    let stranger = push_signature(
        &pusher,
        repo,
        &target,
        b"{}".to_vec(),
        "application/jose+json",
        &"ee".repeat(32),
    )
    .await;
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [misplaced, stranger, good],
    }))
    .unwrap();
    let tag = discover::fallback_tag(&target.digest).unwrap();
    pusher.manifest(repo, &tag, OCI_INDEX, &index).await;

    // What the enforce layer will do: fetch the tag-schema index, filter, fetch, check, verify.
    let fetched = get(
        &http,
        format!("{}/v2/{repo}/manifests/{tag}", reg.url),
        OCI_INDEX,
    )
    .await;
    let store_prints = trusted.thumbprints([&trustgate::notation::policy::StoreRef {
        kind: trustgate::notation::policy::StoreType::Ca,
        name: "test".into(),
    }]);
    let candidates = discover::candidates(&fetched, &store_prints).unwrap();
    assert_eq!(
        candidates.len(),
        2,
        "the stranger's signature is skipped by thumbprint"
    );
    let mut outcomes = Vec::new();
    for c in candidates {
        let m = get(
            &http,
            format!("{}/v2/{repo}/manifests/{}", reg.url, c.digest),
            OCI_MANIFEST,
        )
        .await;
        let layer = match discover::signature_layer(&m, &c.digest, &target) {
            Ok(l) => l,
            Err(e) => {
                outcomes.push(Err(e));
                continue;
            }
        };
        let blob = get(
            &http,
            format!("{}/v2/{repo}/blobs/{}", reg.url, layer.digest),
            "*/*",
        )
        .await;
        discover::check_envelope_blob(&layer, &blob).unwrap();
        outcomes.push(
            run(
                &blob,
                &layer.media_type,
                &policy(STRICT),
                &trusted,
                &target,
                time::OffsetDateTime::now_utc(),
            )
            .map(|v| v.signer_thumbprint.unwrap())
            .map_err(|e| e.to_string()),
        );
    }
    assert!(
        matches!(&outcomes[0], Err(e) if e.contains(&format!("is about {}", other.digest))),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[1], Ok(s.leaf_thumbprint()), "{outcomes:?}");
}
