//! Every example policy in `policy/` loads, and says what its comments claim.
use std::path::{Path, PathBuf};

use trustgate::policy::{
    check_file, DigestPulls, Mode, Pin, Policy, Requirement, RoleRequirement, RuleId,
};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("policy")
        .join(name)
}

fn load(name: &str) -> Policy {
    Policy::load(example(name)).unwrap_or_else(|e| panic!("{name} does not load:\n{e}"))
}

#[test]
fn every_example_file_loads() {
    std::env::set_var("TRUSTGATE_NOTARY_PASSWORD", "example");
    let mut n = 0;
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("policy")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Policy::load(&path).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
            assert!(check_file(&path).is_ok());
            n += 1;
        }
    }
    assert!(n >= 5, "expected at least five example policies, found {n}");
}

#[test]
fn embedded_default_is_policy_default_toml_and_requires_signatures() {
    let embedded = Policy::embedded_default();
    assert_eq!(embedded.origin(), trustgate::policy::EMBEDDED_ORIGIN);
    assert!(embedded.rules().is_empty());
    let from_file = load("default.toml");
    for p in [&embedded, &from_file] {
        let d = p.decide("127.0.0.1:5000", "demo/app");
        assert_eq!(d.rule_id(), RuleId::Default);
        assert_eq!(d.mode(), Mode::Enforce);
        assert_eq!(d.digest_pulls(), DigestPulls::Allow);
        let Requirement::Signed(s) = d.requirement() else {
            panic!("default must be signed, got {:?}", d.requirement());
        };
        let s = s.notary().expect("a Notary verifier");
        assert_eq!(s.trust_server().url().as_str(), "http://127.0.0.1:4443/");
        assert!(s.trust_server().credentials().is_none());
        assert_eq!(
            s.gun("127.0.0.1:5000", "demo/app"),
            "127.0.0.1:5000/demo/app"
        );
        assert_eq!(s.roles(), &RoleRequirement::docker_default());
        assert!(matches!(
            s.pinning().pin_for("127.0.0.1:5000/demo/app"),
            Pin::Tofu
        ));
    }
}

#[test]
fn signed_only_org_example() {
    let p = load("signed-only-org.toml");
    let d = p.decide("registry.example.com", "org/team/app");
    assert_eq!(d.rule_name(), "org images");
    assert_eq!(d.digest_pulls(), DigestPulls::SignedOnly);
    let Requirement::Signed(s) = d.requirement() else {
        panic!()
    };
    let s = s.notary().expect("a Notary verifier");
    assert!(s
        .trust_server()
        .ca_file()
        .unwrap()
        .ends_with("certs/example-notary-tls-ca.pem"));
    assert!(
        matches!(s.pinning().pin_for("registry.example.com/org/team/app"), Pin::Ca(c) if c.len() == 1)
    );
    let d = p.decide("registry.example.com", "other/app");
    assert_eq!(d.rule_name(), "rest of the corporate registry");
    assert!(
        matches!(d.requirement(), Requirement::Reject { message: Some(m) } if m.contains("onboard"))
    );
    assert_eq!(
        p.decide("docker.io", "library/alpine").rule_id(),
        RuleId::Default
    );
}

#[test]
fn audit_rollout_example() {
    let p = load("audit-rollout.toml");
    let d = p.decide("docker.io", "library/alpine");
    assert_eq!((d.rule_name(), d.mode()), ("official images", Mode::Audit));
    let Requirement::Signed(s) = d.requirement() else {
        panic!()
    };
    let s = s.notary().expect("a Notary verifier");
    assert_eq!(
        s.gun("docker.io", "library/alpine"),
        "docker.io/library/alpine"
    );
    let d = p.decide("docker.io", "payments/api");
    assert_eq!(
        (d.rule_name(), d.mode()),
        ("payments (ready)", Mode::Enforce)
    );
    // `*` is one segment: a deeper repository falls through to the default.
    let d = p.decide("docker.io", "payments/api/v2");
    assert_eq!((d.rule_id(), d.mode()), (RuleId::Default, Mode::Audit));
    assert!(matches!(
        p.decide("localhost:5000", "a/b/c").requirement(),
        Requirement::Allow
    ));
}

#[test]
fn airgapped_example_pins_roots_and_forbids_tofu() {
    let p = load("airgapped.toml");
    let d = p.decide("registry.internal:5000", "org/app");
    let Requirement::Signed(s) = d.requirement() else {
        panic!()
    };
    let s = s.notary().expect("a Notary verifier");
    let creds = s.trust_server().credentials().expect("credentials");
    assert_eq!(creds.username, "trustgate");
    assert_eq!(creds.password, "example-password");
    assert!(!format!("{:?}", s.trust_server()).contains("example-password"));
    let pin = s.pinning();
    assert!(!pin.tofu());
    assert!(matches!(pin.pin_for("registry.internal:5000/org/app"), Pin::Certs(c) if c.len() == 1));
    assert!(matches!(
        pin.pin_for("registry.internal:5000/base/alpine"),
        Pin::Certs(_)
    ));
    assert!(matches!(
        pin.pin_for("registry.internal:5000/base/debian"),
        Pin::Forbidden
    ));
}

#[test]
fn multi_signer_example_requires_all_roles() {
    std::env::set_var("TRUSTGATE_NOTARY_PASSWORD", "example");
    let p = load("multi-signer.toml");
    let Requirement::Signed(s) = p
        .decide("registry.example.com", "prod/api")
        .requirement()
        .clone()
    else {
        panic!()
    };
    let s = s.notary().expect("a Notary verifier");
    assert_eq!(
        s.roles(),
        &RoleRequirement::AllOf(vec![
            "targets/releases".into(),
            "targets/security-team".into()
        ])
    );
    assert_eq!(s.trust_server().credentials().unwrap().password, "example");
    let d = p.decide("registry.example.com", "staging/scratch");
    // Both `staging/**` and `*/scratch` match with two literals; fewer `**` wins.
    assert_eq!(d.rule_name(), "scratch");
}

#[test]
fn cosign_migration_example_combines_verifiers() {
    use trustgate::policy::{Combine, VerifierKind};
    let p = load("cosign-migration.toml");
    let names = |image: &str| {
        let d = p.decide("registry.example.com", image);
        let Requirement::Signed(s) = d.requirement() else {
            panic!("{image}: expected signed, got {:?}", d.requirement())
        };
        let names: Vec<String> = s.verifiers().iter().map(|v| v.name().to_string()).collect();
        (d.rule_name().to_string(), s.combine(), names)
    };
    assert_eq!(
        names("apps/web"),
        (
            "apps".into(),
            Combine::AnyOf,
            vec!["dct".into(), "release".into()]
        )
    );
    assert_eq!(
        names("payments/api"),
        (
            "payments".into(),
            Combine::AllOf,
            vec!["dct".into(), "release".into()]
        )
    );
    assert_eq!(names("tools/jq").2, vec!["release".to_string()]);
    let d = p.decide("registry.example.com", "tools/jq");
    let Requirement::Signed(s) = d.requirement() else {
        panic!()
    };
    let VerifierKind::Cosign(c) = s.verifiers()[0].kind() else {
        panic!("release must be a cosign verifier")
    };
    assert_eq!(c.keys().len(), 1);
    assert!(c.keys()[0].path().ends_with("keys/release.pub"));
    assert!(c.keys()[0].key().fingerprint().starts_with("SHA256:"));
    let explained = trustgate::policy::explain(&p, "registry.example.com/apps/web:1.0").unwrap();
    assert!(
        explained.contains("signed by:  any of [dct, release]"),
        "{explained}"
    );
    assert!(
        explained.contains("verifier release (cosign):"),
        "{explained}"
    );
    assert!(
        explained.contains("key:          ecdsa-p256 SHA256:"),
        "{explained}"
    );
    assert!(
        explained.contains("trust server: notary (https://notary.example.com:4443/)"),
        "{explained}"
    );
}
