//! cosign 3's default format, keyed: Sigstore bundle v0.3 (DSSE over an in-toto statement)
//! on real Sigstore test vectors and on bundles these tests make with a key they hold; and its
//! discovery through OCI 1.1 referrers (paged), the `sha256-<hex>` tag schema and the legacy
//! `.sig` tag, against an in-memory registry that can lie.
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use bytes::Bytes;
use support::cosign::{
    bundle, bundle_typed, payload, referrer_manifest, referrers_index, sha256, sig_manifest,
    sig_tag, statement, Signer, BUNDLE, COSIGN_SIGN,
};
use trustgate::cosign::bundle::{verify_bundle, BundleProblem, PredicateRule};
use trustgate::cosign::fetch::{verify_digest, FetchError, Registry};
use trustgate::cosign::referrers::ReferrersPage;
use trustgate::cosign::{CosignLimits, CosignRefusal, PublicKey, SignatureFormat};
use trustgate::policy::CosignKey;
use trustgate::registry::Digest;

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cosign");
/// The subject of the conformance vectors (sha256 of their `a.txt`).
const VECTOR_SUBJECT: &str =
    "sha256:a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf";

fn key_file(name: &str) -> CosignKey {
    let pem = std::fs::read(format!("{FIX}/{name}")).unwrap();
    CosignKey::new(name.into(), PublicKey::from_pem(&pem).unwrap().remove(0))
}

fn key_of(s: &Signer) -> CosignKey {
    CosignKey::new(
        "t.pub".into(),
        PublicKey::from_pem(s.public_pem().as_bytes())
            .unwrap()
            .remove(0),
    )
}

fn vector(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIX}/bundle/{name}")).unwrap()
}

fn d(s: &str) -> Digest {
    Digest::parse(s).unwrap()
}

/// Re-encodes the DSSE payload of `bundle` after `f` changed it, keeping the signature.
fn tamper(bundle: &[u8], f: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(bundle).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut p = b64
        .decode(v["dsseEnvelope"]["payload"].as_str().unwrap())
        .unwrap();
    f(&mut p);
    v["dsseEnvelope"]["payload"] = b64.encode(&p).into();
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn real_sigstore_vectors_verify_and_their_hostile_twins_do_not() {
    let good = vector("intoto-canonical.sigstore.json");
    let key = key_file("bundle/intoto-canonical.pub");
    let subject = d(VECTOR_SUBJECT);
    let ok = verify_bundle(
        &subject,
        &good,
        std::slice::from_ref(&key),
        PredicateRule::Any,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok.format(), SignatureFormat::SigstoreBundle);
    assert_eq!(ok.key_path(), "bundle/intoto-canonical.pub");

    // Not a cosign-sign predicate: an attestation, not a signature.
    let e = verify_bundle(
        &subject,
        &good,
        std::slice::from_ref(&key),
        PredicateRule::CosignSign,
    )
    .unwrap_err();
    assert_eq!(
        e,
        BundleProblem::WrongPredicateType {
            found: "https://example.com/test".into()
        }
    );
    // Another digest than the statement's subject.
    let other = Digest::sha256_of(b"another manifest");
    let e = verify_bundle(
        &other,
        &good,
        std::slice::from_ref(&key),
        PredicateRule::Any,
    )
    .unwrap_err();
    assert_eq!(
        e,
        BundleProblem::OtherSubject {
            found: vec![VECTOR_SUBJECT.into()]
        }
    );
    // Another key (one of the legacy vectors' keys).
    let e = verify_bundle(
        &subject,
        &good,
        &[key_file("busybox.pub")],
        PredicateRule::Any,
    )
    .unwrap_err();
    assert!(
        matches!(e, BundleProblem::NoKeyVerifies { ref hint } if hint.as_deref() == Some("rJuYlKqs5PMzdPzjkZBg4BveZRpD97PBnngUXPZSlr8=")),
        "{e}"
    );
    // The statement retargeted at another subject, signature kept.
    let retargeted = tamper(&good, |p| {
        let s = String::from_utf8(p.clone()).unwrap();
        *p = s
            .replace(&VECTOR_SUBJECT[7..], &other.to_string()[7..])
            .into_bytes();
    });
    let e = verify_bundle(
        &other,
        &retargeted,
        std::slice::from_ref(&key),
        PredicateRule::Any,
    )
    .unwrap_err();
    assert!(matches!(e, BundleProblem::NoKeyVerifies { .. }), "{e}");
    // One flipped payload byte (trailing whitespace a JSON parser would not mind).
    let padded = tamper(&good, |p| p.push(b' '));
    let e = verify_bundle(
        &subject,
        &padded,
        std::slice::from_ref(&key),
        PredicateRule::Any,
    )
    .unwrap_err();
    assert!(matches!(e, BundleProblem::NoKeyVerifies { .. }), "{e}");

    // sigstore-conformance dsse-statement-unknown-type_fail: validly signed, unknown _type.
    let unknown = vector("unknown-type.sigstore.json");
    let e = verify_bundle(
        &subject,
        &unknown,
        &[key_file("bundle/unknown-type.pub")],
        PredicateRule::Any,
    )
    .unwrap_err();
    assert_eq!(
        e,
        BundleProblem::WrongStatementType {
            found: "https://in-toto.io/Statement/v2".into()
        }
    );
}

#[test]
fn self_made_bundles_follow_the_bundle_and_dsse_rules() {
    let s = Signer::generate();
    let key = [key_of(&s)];
    let image = Digest::sha256_of(b"image");
    let st = statement(&image.to_string(), COSIGN_SIGN);
    let good = bundle(&s, &st);
    verify_bundle(&image, &good, &key, PredicateRule::CosignSign).unwrap_or_else(|e| panic!("{e}"));

    let other = Digest::sha256_of(b"other image");
    let for_other = bundle(&s, &statement(&other.to_string(), COSIGN_SIGN));
    assert!(matches!(
        verify_bundle(&image, &for_other, &key, PredicateRule::CosignSign),
        Err(BundleProblem::OtherSubject { .. })
    ));
    // Signed as another payload type: PAE binds the type, and the type itself is checked.
    let typed = bundle_typed(&s, &st, "application/json");
    assert_eq!(
        verify_bundle(&image, &typed, &key, PredicateRule::CosignSign).unwrap_err(),
        BundleProblem::WrongPayloadType {
            found: "application/json".into()
        }
    );
    // The payload type rewritten after signing: PAE no longer matches.
    let mut v: serde_json::Value = serde_json::from_slice(&typed).unwrap();
    v["dsseEnvelope"]["payloadType"] = "application/vnd.in-toto+json".into();
    let retyped = serde_json::to_vec(&v).unwrap();
    assert!(matches!(
        verify_bundle(&image, &retyped, &key, PredicateRule::CosignSign),
        Err(BundleProblem::NoKeyVerifies { .. })
    ));
    // Exactly one signature (protobuf-specs Bundle).
    let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
    let sig = v["dsseEnvelope"]["signatures"][0].clone();
    v["dsseEnvelope"]["signatures"] = serde_json::json!([sig.clone(), sig]);
    assert_eq!(
        verify_bundle(
            &image,
            &serde_json::to_vec(&v).unwrap(),
            &key,
            PredicateRule::CosignSign
        )
        .unwrap_err(),
        BundleProblem::SignatureCount { found: 2 }
    );
    // Keyless material is refused by the keyed verifier, and named.
    let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
    v["verificationMaterial"] = serde_json::json!({"certificate": {"rawBytes": "AQID"}});
    let e = verify_bundle(
        &image,
        &serde_json::to_vec(&v).unwrap(),
        &key,
        PredicateRule::CosignSign,
    )
    .unwrap_err();
    assert!(e.to_string().contains("keyless"), "{e}");
    // An older bundle version is not what cosign 3 writes.
    let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
    v["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=0.1".into();
    assert!(matches!(
        verify_bundle(
            &image,
            &serde_json::to_vec(&v).unwrap(),
            &key,
            PredicateRule::CosignSign
        ),
        Err(BundleProblem::WrongMediaType { .. })
    ));
    // Truncations never panic.
    for cut in 0..good.len() {
        let _ = verify_bundle(&image, &good[..cut], &key, PredicateRule::CosignSign);
    }
}

/// A registry with the referrers API (paged) or without it, by digest and tag, that can lie.
#[derive(Default)]
struct Reg {
    manifests: HashMap<String, Vec<u8>>,
    blobs: HashMap<String, Vec<u8>>,
    /// Pages of the referrers listing; `None`: no referrers API (404).
    pages: Option<Vec<Vec<u8>>>,
    /// The Link every page sends, whatever it is (for the endless and lying listings).
    fixed_link: Option<String>,
    referrer_calls: AtomicUsize,
}

impl Reg {
    fn attach(&mut self, manifest: Vec<u8>, bundle: Vec<u8>) {
        self.blobs.insert(sha256(&bundle), bundle);
        self.manifests.insert(sha256(&manifest), manifest);
    }
}

impl Registry for Reg {
    async fn resolve_tag(&self, tag: &str) -> Result<Digest, FetchError> {
        self.manifests
            .get(tag)
            .map(|m| Digest::sha256_of(m))
            .ok_or(FetchError::NotFound)
    }
    async fn manifest(&self, reference: &str, limit: u64) -> Result<Bytes, FetchError> {
        let m = self.manifests.get(reference).ok_or(FetchError::NotFound)?;
        if m.len() as u64 > limit {
            return Err(FetchError::TooLarge { limit });
        }
        Ok(Bytes::from(m.clone()))
    }
    async fn blob(&self, digest: &Digest, limit: u64) -> Result<Bytes, FetchError> {
        let b = self
            .blobs
            .get(&digest.to_string())
            .ok_or(FetchError::NotFound)?;
        if b.len() as u64 > limit {
            return Err(FetchError::TooLarge { limit });
        }
        Ok(Bytes::from(b.clone()))
    }
    async fn referrers(
        &self,
        digest: &Digest,
        next: Option<&str>,
        limit: u64,
    ) -> Result<ReferrersPage, FetchError> {
        self.referrer_calls.fetch_add(1, Ordering::SeqCst);
        let pages = self.pages.as_ref().ok_or(FetchError::NotFound)?;
        let n: usize = match next {
            None => 0,
            Some(p) => p.rsplit("page=").next().unwrap().parse().unwrap_or(0),
        };
        let body = pages.get(n.min(pages.len() - 1)).unwrap().clone();
        if body.len() as u64 > limit {
            return Err(FetchError::TooLarge { limit });
        }
        let link = self.fixed_link.clone().or_else(|| {
            (n + 1 < pages.len())
                .then(|| format!("</v2/app/referrers/{digest}?page={}>; rel=\"next\"", n + 1))
        });
        Ok(ReferrersPage {
            body: Bytes::from(body),
            link,
        })
    }
}

struct Scene {
    s: Signer,
    image: Digest,
    good_manifest: Vec<u8>,
    good_bundle: Vec<u8>,
}

fn scene() -> Scene {
    let s = Signer::generate();
    let image = Digest::sha256_of(b"the image manifest");
    let good_bundle = bundle(&s, &statement(&image.to_string(), COSIGN_SIGN));
    let good_manifest = referrer_manifest(&image.to_string(), &good_bundle, BUNDLE);
    Scene {
        s,
        image,
        good_manifest,
        good_bundle,
    }
}

async fn check(reg: &Reg, sc: &Scene) -> Result<SignatureFormat, CosignRefusal> {
    verify_digest(reg, &sc.image, &[key_of(&sc.s)], &CosignLimits::default())
        .await
        .map(|k| k.format())
}

#[tokio::test]
async fn bundles_are_found_by_referrers_by_tag_schema_and_legacy_sig_in_that_order() {
    let sc = scene();
    // The referrers API, on its second page, with GHCR's wrong artifactType.
    let mut reg = Reg::default();
    reg.attach(sc.good_manifest.clone(), sc.good_bundle.clone());
    let sbom = b"{\"not\":\"read\"}".to_vec();
    reg.pages = Some(vec![
        referrers_index(&[(&sbom, "application/spdx+json")]),
        referrers_index(&[(&sc.good_manifest, "application/vnd.oci.empty.v1+json")]),
    ]);
    assert_eq!(check(&reg, &sc).await, Ok(SignatureFormat::SigstoreBundle));
    assert_eq!(reg.referrer_calls.load(Ordering::SeqCst), 2);

    // No referrers API: the `sha256-<hex>` tag's index.
    reg.pages = None;
    reg.manifests.insert(
        sc.image.to_string().replacen(':', "-", 1),
        referrers_index(&[(&sc.good_manifest, BUNDLE)]),
    );
    assert_eq!(check(&reg, &sc).await, Ok(SignatureFormat::SigstoreBundle));

    // Neither: the legacy `.sig` tag.
    let mut legacy = Reg::default();
    let p = payload("r.io/app", &sc.image.to_string());
    let sig = sc.s.sign(&p);
    legacy.manifests.insert(
        sig_tag(&sc.image.to_string()),
        sig_manifest(&sha256(b"{}"), 2, &[(p.as_slice(), sig.as_str())]),
    );
    legacy.blobs.insert(sha256(&p), p);
    assert_eq!(
        check(&legacy, &sc).await,
        Ok(SignatureFormat::SimpleSigning)
    );
    // A bundle by another key does not hide a good legacy signature.
    let stranger = Signer::generate();
    let b = bundle(&stranger, &statement(&sc.image.to_string(), COSIGN_SIGN));
    let m = referrer_manifest(&sc.image.to_string(), &b, BUNDLE);
    legacy.pages = Some(vec![referrers_index(&[(&m, BUNDLE)])]);
    legacy.attach(m, b);
    assert_eq!(
        check(&legacy, &sc).await,
        Ok(SignatureFormat::SimpleSigning)
    );

    // Nothing at all.
    let e = check(&Reg::default(), &sc).await.unwrap_err();
    assert!(matches!(e, CosignRefusal::NotSigned { .. }), "{e}");
}

#[tokio::test]
async fn a_lying_referrers_index_vouches_for_nothing() {
    let sc = scene();
    let img = sc.image.to_string();
    let mut reg = Reg::default();
    // Right bundle, wrong layer type.
    let wrong_layer = referrer_manifest(&img, &sc.good_bundle, "application/vnd.in-toto+json");
    // Right bundle, but the manifest is attached to another image.
    let other = Digest::sha256_of(b"another image").to_string();
    let wrong_subject = referrer_manifest(&other, &sc.good_bundle, BUNDLE);
    // A bundle signed for another image, attached to this one.
    let other_bundle = bundle(&sc.s, &statement(&other, COSIGN_SIGN));
    let other_stmt = referrer_manifest(&img, &other_bundle, BUNDLE);
    // An attestation by the right key, not a signature.
    let attest = bundle(&sc.s, &statement(&img, "https://slsa.dev/provenance/v1"));
    let attestation = referrer_manifest(&img, &attest, BUNDLE);
    // The tampered payload of a good bundle.
    let tampered_b = tamper(&sc.good_bundle, |p| p.push(b'\n'));
    let tampered = referrer_manifest(&img, &tampered_b, BUNDLE);
    for (m, b) in [
        (&wrong_layer, &sc.good_bundle),
        (&wrong_subject, &sc.good_bundle),
        (&other_stmt, &other_bundle),
        (&attestation, &attest),
        (&tampered, &tampered_b),
    ] {
        reg.attach(m.clone(), b.clone());
    }
    // An entry whose digest the registry serves other bytes for.
    // (Same length as the good one, so the read is not cut at the entry's size first.)
    let swapped = referrer_manifest(&img, &vec![b'x'; sc.good_bundle.len()], BUNDLE);
    reg.manifests
        .insert(sha256(&swapped), sc.good_manifest.clone());
    // An entry whose bundle layer the registry serves other (good, signed) bytes for.
    let fake_bundle = vec![b'y'; sc.good_bundle.len()];
    let blob_swapped = referrer_manifest(&img, &fake_bundle, BUNDLE);
    reg.manifests
        .insert(sha256(&blob_swapped), blob_swapped.clone());
    reg.blobs
        .insert(sha256(&fake_bundle), sc.good_bundle.clone());
    reg.pages = Some(vec![referrers_index(&[
        (&wrong_layer, BUNDLE),
        (&wrong_subject, BUNDLE),
        (&other_stmt, BUNDLE),
        (&attestation, BUNDLE),
        (&tampered, BUNDLE),
        (&swapped, BUNDLE),
        (&blob_swapped, BUNDLE),
    ])]);
    let e = check(&reg, &sc).await.unwrap_err();
    let CosignRefusal::NoValidSignature { found, .. } = &e else {
        panic!("{e}")
    };
    let expect = [
        "has no application/vnd.dev.sigstore.bundle.v0.3+json layer",
        &format!("its subject is {other}, not {img}"),
        &format!("signed statement is for [{other}]"),
        "is an attestation, not a signature",
        "verifies with none of the configured keys",
        &format!("its manifest hashes to {}", sha256(&sc.good_manifest)),
        &format!("bundle blob hashes to {}", sha256(&sc.good_bundle)),
    ];
    assert_eq!(found.len(), expect.len(), "{found:#?}");
    for (line, want) in found.iter().zip(expect) {
        assert!(line.contains(want), "{line:?} should say {want:?}");
    }
    // The same liars before a good entry do not stop it.
    reg.attach(sc.good_manifest.clone(), sc.good_bundle.clone());
    reg.pages = Some(vec![referrers_index(&[
        (&wrong_subject, BUNDLE),
        (&other_stmt, BUNDLE),
        (&sc.good_manifest, BUNDLE),
    ])]);
    assert_eq!(check(&reg, &sc).await, Ok(SignatureFormat::SigstoreBundle));
}

#[tokio::test]
async fn endless_huge_and_misdirected_listings_are_refused_within_bounds() {
    let sc = scene();
    let limits = CosignLimits::default();
    let refusal = |e: CosignRefusal| match e {
        CosignRefusal::BadArtifact { reason, .. } => reason,
        e => panic!("{e}"),
    };
    // A listing whose every page links to itself.
    let mut reg = Reg {
        pages: Some(vec![referrers_index(&[])]),
        fixed_link: Some(format!(
            "</v2/app/referrers/{}?page=0>; rel=\"next\"",
            sc.image
        )),
        ..Reg::default()
    };
    let e = refusal(check(&reg, &sc).await.unwrap_err());
    assert_eq!(e, "the listing has more than 8 pages");
    assert_eq!(
        reg.referrer_calls.load(Ordering::SeqCst),
        limits.max_referrer_pages
    );
    // A Link to another digest's listing is not followed.
    reg.fixed_link = Some(format!(
        "</v2/app/referrers/{}>; rel=\"next\"",
        Digest::sha256_of(b"x")
    ));
    let e = refusal(check(&reg, &sc).await.unwrap_err());
    assert!(e.contains("is not the referrers listing of"), "{e}");
    // Too many entries over the pages.
    let junk: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("{{\"n\":{i}}}").into_bytes())
        .collect();
    let entries: Vec<(&[u8], &str)> = junk
        .iter()
        .map(|j| (j.as_slice(), "application/x"))
        .collect();
    let page = referrers_index(&entries);
    reg.fixed_link = None;
    reg.pages = Some(vec![page.clone(), page]);
    let e = refusal(check(&reg, &sc).await.unwrap_err());
    assert_eq!(e, "the listing has more than 512 entries");
    // One page over the byte limit.
    let many: Vec<(&[u8], &str)> =
        std::iter::repeat_n((&b"x"[..], "application/x"), 3000).collect();
    reg.pages = Some(vec![referrers_index(&many)]);
    let e = refusal(check(&reg, &sc).await.unwrap_err());
    assert_eq!(e, "page 0 is over the 262144-byte limit");
    // More bundle candidates than signatures examined.
    let many: Vec<(&[u8], &str)> = junk
        .iter()
        .take(65)
        .map(|j| (j.as_slice(), BUNDLE))
        .collect();
    reg.pages = Some(vec![referrers_index(&many)]);
    let e = refusal(check(&reg, &sc).await.unwrap_err());
    assert_eq!(e, "more than 64 bundle candidates among the referrers");
    // A bundle layer over its limit is not read.
    let mut reg = Reg::default();
    let big = vec![b' '; 200 * 1024];
    let m = referrer_manifest(&sc.image.to_string(), &big, BUNDLE);
    reg.pages = Some(vec![referrers_index(&[(&m, BUNDLE)])]);
    reg.attach(m, big);
    let e = check(&reg, &sc).await.unwrap_err();
    assert!(e.to_string().contains("over the 131072-byte limit"), "{e}");
}
