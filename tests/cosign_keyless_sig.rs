//! Keyless simple-signing (`.sig`) signatures, on self-made Fulcio and Rekor material
//! (tests/support/keyless.rs), and the attacks on them: wrong identity or issuer, no log time,
//! a log the root does not list, a log time outside the certificate, a tampered SET or
//! payload, a signature for another image, a certificate from another CA.
mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use trustgate::cosign::fetch::{verify_digest_keyless, FetchError, Registry};
use trustgate::cosign::keyless::{
    verify_keyless_layers, GithubClaim, KeylessPolicy, Matcher, TrustedRoot,
};
use trustgate::cosign::referrers::ReferrersPage;
use trustgate::cosign::{parse_signature_manifest, CosignLimits, CosignRefusal};
use trustgate::registry::Digest;

use support::cosign::{payload, sig_tag};
use support::keyless::{annotations, keyless_sig_manifest, trusted_root, Fulcio, Rekor, ISSUED};

const ID: &str = "release@example.com";
const ISSUER: &str = "https://issuer.example";

struct World {
    fulcio: Fulcio,
    rekor: Rekor,
    image: Digest,
}

impl World {
    fn new() -> World {
        World {
            fulcio: Fulcio::new(),
            rekor: Rekor::new(),
            image: Digest::sha256_of(b"the image manifest"),
        }
    }

    fn policy(&self) -> KeylessPolicy {
        self.policy_with_root(&trusted_root(&self.fulcio, &self.rekor))
    }

    fn policy_with_root(&self, json: &str) -> KeylessPolicy {
        KeylessPolicy {
            root: Arc::new(TrustedRoot::from_json(Path::new("test-root.json"), json).unwrap()),
            identity: Matcher::Exact(ID.into()),
            issuer: Matcher::Exact(ISSUER.into()),
            github: Vec::new(),
            // Self-made certificates carry no SCT (the real vectors check SCTs).
            tlog: true,
            sct: false,
        }
    }

    /// A `.sig` manifest and payload: `identity`/`issuer`'s certificate signs a payload for
    /// `digest`, logged at `time` (`None`: no Rekor bundle annotation).
    fn sig(
        &self,
        identity: &str,
        issuer: &str,
        digest: &Digest,
        time: Option<i64>,
    ) -> (Vec<u8>, Vec<u8>) {
        let leaf = self.fulcio.leaf(identity, issuer, Some("org/repo"));
        let p = payload("registry.test/app", &digest.to_string());
        let sig = leaf.sign(&p);
        let entry = time.map(|t| self.rekor.entry(&p, &sig, &leaf.pem, t));
        let m = keyless_sig_manifest(&[(&p, annotations(&sig, &leaf.pem, entry.as_deref()))]);
        (m, p)
    }
}

fn check(
    image: &Digest,
    (manifest, p): &(Vec<u8>, Vec<u8>),
    policy: &KeylessPolicy,
) -> Result<String, String> {
    let layers = parse_signature_manifest("t.sig", manifest, &CosignLimits::default()).unwrap();
    let with: Vec<_> = layers
        .into_iter()
        .map(|l| (l, Bytes::from(p.clone())))
        .collect();
    verify_keyless_layers(image, &with, policy)
        .map(|v| format!("{} {} {:?}", v.identity(), v.issuer(), v.integrated_time()))
        .map_err(|e| e.join("; "))
}

#[test]
fn a_keyless_sig_layer_with_a_rekor_set_verifies() {
    let w = World::new();
    let sig = w.sig(ID, ISSUER, &w.image, Some(ISSUED + 60));
    assert_eq!(
        check(&w.image, &sig, &w.policy()),
        Ok(format!("{ID} {ISSUER} Some({})", ISSUED + 60))
    );
    let mut p = w.policy();
    p.github = vec![(GithubClaim::Repository, "org/repo".into())];
    assert!(check(&w.image, &sig, &p).is_ok());
    p.github = vec![(GithubClaim::Repository, "org/other".into())];
    let e = check(&w.image, &sig, &p).unwrap_err();
    assert!(
        e.contains("github_workflow_repository \"org/repo\", expected \"org/other\""),
        "{e}"
    );
}

#[test]
fn wrong_identity_and_wrong_issuer_are_refused_naming_both() {
    let w = World::new();
    let e = check(
        &w.image,
        &w.sig("mallory@example.com", ISSUER, &w.image, Some(ISSUED + 60)),
        &w.policy(),
    )
    .unwrap_err();
    assert!(e.contains(&format!("certificate is for identity \"mallory@example.com\" issued by \"{ISSUER}\"; expected identity \"{ID}\" issued by \"{ISSUER}\"")), "{e}");
    let e = check(
        &w.image,
        &w.sig(ID, "https://evil.example", &w.image, Some(ISSUED + 60)),
        &w.policy(),
    )
    .unwrap_err();
    assert!(e.contains(&format!("certificate is for identity \"{ID}\" issued by \"https://evil.example\"; expected identity \"{ID}\" issued by \"{ISSUER}\"")), "{e}");
}

#[test]
fn an_expired_certificate_without_a_log_time_is_refused() {
    let w = World::new();
    let sig = w.sig(ID, ISSUER, &w.image, None);
    for tlog in [true, false] {
        let mut p = w.policy();
        p.tlog = tlog;
        let e = check(&w.image, &sig, &p).unwrap_err();
        assert!(
            e.contains("timestamp") || (tlog && e.contains("inclusion")),
            "tlog={tlog}: {e}"
        );
    }
}

#[test]
fn a_log_time_outside_the_certificate_validity_is_refused() {
    let w = World::new();
    for t in [ISSUED - 60, ISSUED + 3600] {
        let e = check(&w.image, &w.sig(ID, ISSUER, &w.image, Some(t)), &w.policy()).unwrap_err();
        assert!(
            e.starts_with("signature layer 0: certificate chain is invalid: certificate chain validation failed: Cert")
                && (e.contains("CertNotValidYet") || e.contains("CertExpired")),
            "{e}"
        );
    }
}

#[test]
fn an_entry_from_an_unknown_log_is_refused() {
    let w = World::new();
    let other_log = Rekor::new();
    let root = trusted_root(&w.fulcio, &other_log);
    let e = check(
        &w.image,
        &w.sig(ID, ISSUER, &w.image, Some(ISSUED + 60)),
        &w.policy_with_root(&root),
    )
    .unwrap_err();
    assert!(
        e.contains(
            "invalid inclusion promise: No log key valid at integrated time 2024-01-01T00:01:00Z"
        ),
        "{e}"
    );
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let w = World::new();
    let root = trusted_root(&Fulcio::new(), &w.rekor);
    let e = check(
        &w.image,
        &w.sig(ID, ISSUER, &w.image, Some(ISSUED + 60)),
        &w.policy_with_root(&root),
    )
    .unwrap_err();
    assert!(e.contains("certificate chain validation failed"), "{e}");
}

#[test]
fn a_tampered_set_or_payload_is_refused() {
    let w = World::new();
    let (m, p) = w.sig(ID, ISSUER, &w.image, Some(ISSUED + 60));
    // The integrated time moved (still inside the certificate): the SET no longer covers it.
    let moved = String::from_utf8(m.clone()).unwrap().replace(
        &format!("\\\"integratedTime\\\":{}", ISSUED + 60),
        &format!("\\\"integratedTime\\\":{}", ISSUED + 61),
    );
    assert_ne!(moved.as_bytes(), &m[..]);
    assert_eq!(
        check(&w.image, &(moved.into_bytes(), p.clone()), &w.policy()),
        Err("signature layer 0: invalid inclusion promise: SET verification failed: Verification error: signature does not verify".to_string())
    );
    // The payload changed after signing (its descriptor updated to match).
    let other = Digest::sha256_of(b"another image");
    let tampered = String::from_utf8(p.clone())
        .unwrap()
        .replace(&w.image.to_string(), &other.to_string());
    let m2 = String::from_utf8(m).unwrap().replace(
        &support::cosign::sha256(&p),
        &support::cosign::sha256(tampered.as_bytes()),
    );
    let e = check(
        &other,
        &(m2.into_bytes(), tampered.into_bytes()),
        &w.policy(),
    )
    .unwrap_err();
    assert_eq!(
        e,
        "signature layer 0: invalid signature: signature verification failed: Verification error: signature does not verify"
    );
}

#[test]
fn a_signature_for_another_image_is_refused() {
    let w = World::new();
    let other = Digest::sha256_of(b"another image");
    let e = check(
        &w.image,
        &w.sig(ID, ISSUER, &other, Some(ISSUED + 60)),
        &w.policy(),
    )
    .unwrap_err();
    assert_eq!(
        e,
        format!("signature layer 0: signed payload is for {other}")
    );
}

#[derive(Default)]
struct Mem {
    manifests: HashMap<String, Vec<u8>>,
    blobs: HashMap<String, Vec<u8>>,
}

impl Registry for Mem {
    async fn resolve_tag(&self, tag: &str) -> Result<Digest, FetchError> {
        self.manifests
            .get(tag)
            .map(|m| Digest::sha256_of(m))
            .ok_or(FetchError::NotFound)
    }
    async fn manifest(&self, reference: &str, _: u64) -> Result<Bytes, FetchError> {
        self.manifests
            .get(reference)
            .map(|m| Bytes::from(m.clone()))
            .ok_or(FetchError::NotFound)
    }
    async fn blob(&self, digest: &Digest, _: u64) -> Result<Bytes, FetchError> {
        self.blobs
            .get(&digest.to_string())
            .map(|b| Bytes::from(b.clone()))
            .ok_or(FetchError::NotFound)
    }
    async fn referrers(
        &self,
        _: &Digest,
        _: Option<&str>,
        _: u64,
    ) -> Result<ReferrersPage, FetchError> {
        Err(FetchError::NotFound)
    }
}

#[tokio::test]
async fn the_fetch_flow_finds_the_sig_tag_and_names_what_it_expected() {
    let w = World::new();
    let (m, p) = w.sig(ID, ISSUER, &w.image, Some(ISSUED + 60));
    let mut reg = Mem::default();
    reg.manifests.insert(sig_tag(&w.image.to_string()), m);
    reg.blobs.insert(Digest::sha256_of(&p).to_string(), p);
    let ok = verify_digest_keyless(&reg, &w.image, &w.policy(), &CosignLimits::default())
        .await
        .unwrap();
    assert_eq!(ok.identity(), ID);
    let mut p = w.policy();
    p.identity = Matcher::regex(r"ops@example\.com").unwrap();
    let e = verify_digest_keyless(&reg, &w.image, &p, &CosignLimits::default())
        .await
        .unwrap_err();
    assert!(matches!(e, CosignRefusal::NoValidKeyless { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(r"for identity matching /ops@example\.com/ issued by"),
        "{msg}"
    );
    assert!(
        msg.contains("certificate is for identity \"release@example.com\""),
        "{msg}"
    );
    let e = verify_digest_keyless(
        &Mem::default(),
        &w.image,
        &w.policy(),
        &CosignLimits::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, CosignRefusal::NotSigned { .. }), "{e:?}");
}

#[test]
fn sct_is_required_unless_the_policy_turns_it_off() {
    // The self-made certificate has no SCT (the real vectors of cosign_keyless.rs have one).
    let w = World::new();
    let sig = w.sig(ID, ISSUER, &w.image, Some(ISSUED + 60));
    let mut p = w.policy();
    p.sct = true;
    let e = check(&w.image, &sig, &p).unwrap_err();
    assert!(
        e.contains("invalid signed certificate timestamp: certificate is missing SCT extension"),
        "{e}"
    );
    p.sct = false;
    assert!(check(&w.image, &sig, &p).is_ok());
}

/// The bundle format on self-made material: accepted for the identity and a `cosign sign`
/// statement naming the image; refused for another image and for an attestation.
#[test]
fn a_self_made_keyless_bundle_verifies_and_binds_the_image() {
    use support::cosign::{statement, COSIGN_SIGN};
    use support::keyless::keyless_bundle;
    use trustgate::cosign::bundle::{BundleProblem, PredicateRule};
    use trustgate::cosign::keyless::verify_keyless_bundle;
    let w = World::new();
    let leaf = w.fulcio.leaf(ID, ISSUER, None);
    let b = keyless_bundle(
        &leaf,
        &w.rekor,
        &statement(&w.image.to_string(), COSIGN_SIGN),
        ISSUED + 5,
    );
    let ok = verify_keyless_bundle(&w.image, &b, &w.policy(), PredicateRule::CosignSign)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (ok.identity(), ok.integrated_time()),
        (ID, Some(ISSUED + 5))
    );
    let other = Digest::sha256_of(b"another image");
    let e = verify_keyless_bundle(&other, &b, &w.policy(), PredicateRule::CosignSign).unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("names [{}], not {other}", w.image)),
        "{e}"
    );
    let attest = keyless_bundle(
        &leaf,
        &w.rekor,
        &statement(&w.image.to_string(), "https://slsa.dev/provenance/v1"),
        ISSUED + 5,
    );
    let e = verify_keyless_bundle(&w.image, &attest, &w.policy(), PredicateRule::CosignSign)
        .unwrap_err();
    assert!(
        matches!(e, BundleProblem::WrongPredicateType { .. }),
        "{e:?}"
    );
}
