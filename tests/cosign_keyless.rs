//! Keyless cosign verification of Sigstore bundles, on bundles made by real Sigstore clients
//! against the public-good instance (sigstore-conformance vectors; fixtures/cosign/keyless/
//! PROVENANCE.md). Fulcio certificates live ten minutes, so every check here is at the log's
//! integrated time: nothing depends on the wall clock.

use std::path::Path;
use std::sync::Arc;

use trustgate::cosign::bundle::{BundleProblem, PredicateRule};
use trustgate::cosign::keyless::{
    verify_keyless_bundle, GithubClaim, KeylessPolicy, KeylessProblem, Matcher, TrustedRoot,
};
use trustgate::registry::Digest;

const DIR: &str = "tests/fixtures/cosign/keyless";
/// sigstore-conformance's default identity and issuer (test/assets/bundle-verify/README.md).
const IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const ISSUER: &str = "https://token.actions.githubusercontent.com";

fn read(p: &str) -> Vec<u8> {
    std::fs::read(Path::new(DIR).join(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn root(p: &str) -> Arc<TrustedRoot> {
    Arc::new(TrustedRoot::load(&Path::new(DIR).join(p)).unwrap_or_else(|e| panic!("{p}: {e}")))
}

fn policy(root: Arc<TrustedRoot>) -> KeylessPolicy {
    KeylessPolicy {
        root,
        identity: Matcher::Exact(IDENTITY.into()),
        issuer: Matcher::Exact(ISSUER.into()),
        github: Vec::new(),
        tlog: true,
        sct: true,
    }
}

fn a_txt() -> Digest {
    Digest::sha256_of(&read("a.txt"))
}

fn keyless_problem(e: BundleProblem) -> KeylessProblem {
    match e {
        BundleProblem::Keyless(p) => p,
        other => panic!("expected a keyless refusal, got {other:?}"),
    }
}

#[test]
fn a_real_v03_dsse_bundle_verifies_with_identity_issuer_sct_and_log() {
    let p = policy(root("production.trusted_root.json"));
    let ok = verify_keyless_bundle(
        &a_txt(),
        &read("dsse-v3.bundle.json"),
        &p,
        PredicateRule::Any,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok.identity(), IDENTITY);
    assert_eq!(ok.issuer(), ISSUER);
    assert_eq!(ok.digest(), &a_txt());
    // The bundle's Rekor entry (logIndex 155690850).
    assert_eq!(ok.integrated_time(), Some(1734374576));
    // Regexes match the whole value.
    let mut r = policy(root("production.trusted_root.json"));
    r.identity = Matcher::regex(r"https://github\.com/sigstore-conformance/.*").unwrap();
    r.issuer = Matcher::regex(r"https://token\.actions\.githubusercontent\.com").unwrap();
    verify_keyless_bundle(
        &a_txt(),
        &read("dsse-v3.bundle.json"),
        &r,
        PredicateRule::Any,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    r.identity = Matcher::regex("sigstore-conformance").unwrap();
    assert!(verify_keyless_bundle(
        &a_txt(),
        &read("dsse-v3.bundle.json"),
        &r,
        PredicateRule::Any
    )
    .is_err());
}

#[test]
fn the_cosign_predicate_rule_refuses_an_attestation() {
    let p = policy(root("production.trusted_root.json"));
    let e = verify_keyless_bundle(
        &a_txt(),
        &read("dsse-v3.bundle.json"),
        &p,
        PredicateRule::CosignSign,
    )
    .unwrap_err();
    assert!(
        matches!(e, BundleProblem::WrongPredicateType { ref found } if found == "https://slsa.dev/provenance/v1"),
        "{e:?}"
    );
}

#[test]
fn wrong_identity_or_issuer_is_refused_naming_expected_and_found() {
    let bundle = read("dsse-v3.bundle.json");
    let mut p = policy(root("production.trusted_root.json"));
    p.identity = Matcher::Exact(
        "https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main".into(),
    );
    let e = keyless_problem(
        verify_keyless_bundle(&a_txt(), &bundle, &p, PredicateRule::Any).unwrap_err(),
    );
    let msg = e.to_string();
    assert!(matches!(e, KeylessProblem::Identity { .. }), "{e:?}");
    assert!(msg.contains("expected identity \"https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main\""), "{msg}");
    assert!(
        msg.contains(&format!(
            "certificate is for identity {IDENTITY:?} issued by {ISSUER:?}"
        )),
        "{msg}"
    );

    let mut p = policy(root("production.trusted_root.json"));
    p.issuer = Matcher::Exact("https://accounts.google.com".into());
    let msg = keyless_problem(
        verify_keyless_bundle(&a_txt(), &bundle, &p, PredicateRule::Any).unwrap_err(),
    )
    .to_string();
    assert!(
        msg.contains("issued by \"https://accounts.google.com\""),
        "{msg}"
    );
    assert!(msg.contains(&format!("issued by {ISSUER:?}")), "{msg}");

    let mut p = policy(root("production.trusted_root.json"));
    p.issuer = Matcher::regex(r"https://accounts\.google\.com").unwrap();
    let msg = keyless_problem(
        verify_keyless_bundle(&a_txt(), &bundle, &p, PredicateRule::Any).unwrap_err(),
    )
    .to_string();
    assert!(
        msg.contains(r"issued by matching /https://accounts\.google\.com/"),
        "{msg}"
    );
}

#[test]
fn github_workflow_claims_are_checked() {
    let bundle = read("dsse-v3.bundle.json");
    let mut p = policy(root("production.trusted_root.json"));
    p.github = vec![(
        GithubClaim::Repository,
        "sigstore-conformance/extremely-dangerous-public-oidc-beacon".into(),
    )];
    verify_keyless_bundle(&a_txt(), &bundle, &p, PredicateRule::Any)
        .unwrap_or_else(|e| panic!("{e}"));
    p.github = vec![(GithubClaim::Repository, "evil/repo".into())];
    let msg = keyless_problem(
        verify_keyless_bundle(&a_txt(), &bundle, &p, PredicateRule::Any).unwrap_err(),
    )
    .to_string();
    assert!(msg.contains("github_workflow_repository \"sigstore-conformance/extremely-dangerous-public-oidc-beacon\", expected \"evil/repo\""), "{msg}");
}

#[test]
fn a_bundle_for_another_subject_is_refused() {
    let p = policy(root("production.trusted_root.json"));
    let other = Digest::sha256_of(b"another image");
    let e = verify_keyless_bundle(&other, &read("dsse-v3.bundle.json"), &p, PredicateRule::Any)
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("names [{}], not {other}", a_txt())),
        "{msg}"
    );
}

#[test]
fn a_tampered_payload_is_refused() {
    let mut b: serde_json::Value = serde_json::from_slice(&read("dsse-v3.bundle.json")).unwrap();
    use base64::Engine as _;
    let e = base64::engine::general_purpose::STANDARD;
    let payload = e
        .decode(b["dsseEnvelope"]["payload"].as_str().unwrap())
        .unwrap();
    let tampered = String::from_utf8(payload)
        .unwrap()
        .replace("\"predicate\":{", "\"predicate\":{\"x\":1,");
    b["dsseEnvelope"]["payload"] = e.encode(tampered).into();
    let p = policy(root("production.trusted_root.json"));
    let msg = verify_keyless_bundle(&a_txt(), b.to_string().as_bytes(), &p, PredicateRule::Any)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("DSSE signature verification failed"), "{msg}");
}

#[test]
fn an_entry_from_a_log_the_root_does_not_list_is_refused() {
    // The production root without its Rekor keys: the bundle's log is unknown.
    let mut r: serde_json::Value =
        serde_json::from_slice(&read("production.trusted_root.json")).unwrap();
    r["tlogs"] = serde_json::json!([]);
    let root =
        Arc::new(TrustedRoot::from_json(Path::new("no-rekor.json"), &r.to_string()).unwrap());
    let msg = verify_keyless_bundle(
        &a_txt(),
        &read("dsse-v3.bundle.json"),
        &policy(root),
        PredicateRule::Any,
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("No log key valid at integrated time 2024-12-16T18:42:56Z for log ID wNI9atQGlz+VWfO6LRygH4QUfY/8W4RFwiT5i5WRgB0="),
        "{msg}"
    );
}

#[test]
fn a_custom_trusted_root_is_used_and_only_it() {
    let dir = "intoto-with-custom-trust-root";
    let digest = Digest::sha256_of(&read(&format!("{dir}/artifact")));
    let custom = policy(root(&format!("{dir}/trusted_root.json")));
    verify_keyless_bundle(
        &digest,
        &read(&format!("{dir}/bundle.sigstore.json")),
        &custom,
        PredicateRule::Any,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // The same bundle does not chain to the production root.
    let prod = policy(root("production.trusted_root.json"));
    assert!(verify_keyless_bundle(
        &digest,
        &read(&format!("{dir}/bundle.sigstore.json")),
        &prod,
        PredicateRule::Any
    )
    .is_err());
}

#[test]
fn a_log_time_outside_the_certificate_validity_is_refused() {
    for dir in [
        "intoto-expired-certificate_fail",
        "intoto-set-outside-signing-cert-validity_fail",
    ] {
        let digest = Digest::sha256_of(&read(&format!("{dir}/artifact")));
        let p = policy(root(&format!("{dir}/trusted_root.json")));
        let e = verify_keyless_bundle(
            &digest,
            &read(&format!("{dir}/bundle.sigstore.json")),
            &p,
            PredicateRule::Any,
        )
        .unwrap_err();
        assert!(
            matches!(e, BundleProblem::Keyless(KeylessProblem::Sigstore { .. })),
            "{dir}: {e:?}"
        );
    }
}

#[test]
fn an_expired_certificate_without_a_log_time_is_refused() {
    // The log entry removed: no SET, no inclusion proof, no TSA timestamp, so nothing proves
    // when the (long expired) certificate signed. There is no fallback to "now".
    let mut b: serde_json::Value = serde_json::from_slice(&read("dsse-v3.bundle.json")).unwrap();
    b["verificationMaterial"]["tlogEntries"] = serde_json::json!([]);
    let b = b.to_string();
    for tlog in [true, false] {
        let mut p = policy(root("production.trusted_root.json"));
        p.tlog = tlog;
        let e = verify_keyless_bundle(&a_txt(), b.as_bytes(), &p, PredicateRule::Any).unwrap_err();
        assert!(
            matches!(e, BundleProblem::Keyless(KeylessProblem::Sigstore { .. })),
            "tlog={tlog}: {e:?}"
        );
    }
    // tlog = false still takes the signing time from a verified SET, never from the clock.
    let mut p = policy(root("production.trusted_root.json"));
    p.tlog = false;
    verify_keyless_bundle(
        &a_txt(),
        &read("dsse-v3.bundle.json"),
        &p,
        PredicateRule::Any,
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_key_signed_bundle_is_not_keyless() {
    let b = std::fs::read("tests/fixtures/cosign/bundle/intoto-canonical.sigstore.json").unwrap();
    let p = policy(root("production.trusted_root.json"));
    let e = verify_keyless_bundle(&a_txt(), &b, &p, PredicateRule::Any).unwrap_err();
    assert_eq!(
        e,
        BundleProblem::Keyless(KeylessProblem::NoCertificate),
        "{e}"
    );
}
