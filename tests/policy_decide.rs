//! `decide`: scope matching, most-specific-wins, the default, each requirement; `explain`.
use std::time::Duration;

use trustgate::policy::{explain, DigestPulls, Mode, Policy, Requirement, RoleRequirement, RuleId};

const HEAD: &str = "[trust_servers.local]\nurl = \"http://127.0.0.1:4443\"\n\n[default]\nrequire = \"reject\"\nmessage = \"nothing matched\"\n";

fn policy(rules: &str) -> Policy {
    Policy::from_str(&format!("{HEAD}\n{rules}"), "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn winner(p: &Policy, image: &str) -> String {
    let (reg, repo) = image.split_once('/').unwrap();
    p.decide(reg, repo).rule_name().to_string()
}

#[test]
fn single_star_matches_exactly_one_segment() {
    let p = policy("[[rules]]\nname = \"one\"\nscope = \"r.io/org/*\"\nrequire = \"allow\"\n");
    assert_eq!(winner(&p, "r.io/org/app"), "one");
    assert_eq!(winner(&p, "r.io/org/team/app"), "default");
    assert_eq!(winner(&p, "r.io/org"), "default");
    assert_eq!(winner(&p, "r.io/other/app"), "default");
}

#[test]
fn double_star_matches_any_depth_including_zero() {
    let p = policy("[[rules]]\nname = \"deep\"\nscope = \"r.io/org/**\"\nrequire = \"allow\"\n[[rules]]\nname = \"mid\"\nscope = \"**/base/**/alpine\"\nrequire = \"allow\"\n");
    assert_eq!(winner(&p, "r.io/org/app"), "deep");
    assert_eq!(winner(&p, "r.io/org/a/b/c/d"), "deep");
    assert_eq!(
        winner(&p, "r.io/org"),
        "deep",
        "`**` also matches zero segments"
    );
    assert_eq!(
        winner(&p, "r.io/organisation/app"),
        "default",
        "segments, not prefixes"
    );
    assert_eq!(winner(&p, "q.io/base/alpine"), "mid");
    assert_eq!(winner(&p, "q.io/x/base/y/z/alpine"), "mid");
    assert_eq!(winner(&p, "q.io/base/alpine/x"), "default");
}

#[test]
fn registry_matches_case_insensitively() {
    let p = policy(
        "[[rules]]\nname = \"r\"\nscope = \"Registry.Example.com:5000/app\"\nrequire = \"allow\"\n",
    );
    assert_eq!(winner(&p, "registry.example.COM:5000/app"), "r");
}

#[test]
fn most_specific_match_wins_regardless_of_file_order() {
    let rules = [
        ("everything", "**"),
        ("registry", "r.io/**"),
        ("one-level", "r.io/*/app"),
        ("org-deep", "r.io/org/**"),
        ("exact", "r.io/org/app"),
        ("org-one", "r.io/org/*"),
    ];
    let text = |order: &[usize]| {
        order
            .iter()
            .map(|&i| {
                format!(
                    "[[rules]]\nname = \"{}\"\nscope = \"{}\"\nrequire = \"allow\"\n",
                    rules[i].0, rules[i].1
                )
            })
            .collect::<String>()
    };
    for order in [[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0], [2, 4, 0, 5, 1, 3]] {
        let p = policy(&text(&order));
        assert_eq!(winner(&p, "r.io/org/app"), "exact", "{order:?}");
        // 2 literals each; `r.io/org/*` has no `**`, so it beats `r.io/org/**`.
        assert_eq!(winner(&p, "r.io/org/web"), "org-one", "{order:?}");
        assert_eq!(winner(&p, "r.io/org/a/b"), "org-deep", "{order:?}");
        // `r.io/*/app` (2 literals, one `*`) beats `r.io/**` (1 literal).
        assert_eq!(winner(&p, "r.io/team/app"), "one-level", "{order:?}");
        assert_eq!(winner(&p, "r.io/team/web"), "registry", "{order:?}");
        assert_eq!(winner(&p, "q.io/x"), "everything", "{order:?}");
    }
}

#[test]
fn fewer_double_stars_then_fewer_stars() {
    // Same literal count (2): fewer `**` wins.
    let p = policy("[[rules]]\nname = \"two-any\"\nscope = \"r.io/**/x/**\"\nrequire = \"allow\"\n[[rules]]\nname = \"one-any\"\nscope = \"r.io/**/x\"\nrequire = \"allow\"\n");
    assert_eq!(winner(&p, "r.io/a/x"), "one-any");
    // Same literals and `**`: fewer `*` wins.
    let p = policy("[[rules]]\nname = \"one-star\"\nscope = \"r.io/**/*/x\"\nrequire = \"allow\"\n[[rules]]\nname = \"no-star\"\nscope = \"r.io/**/x\"\nrequire = \"allow\"\n");
    assert_eq!(winner(&p, "r.io/a/x"), "no-star");
    assert_eq!(winner(&p, "r.io/x"), "no-star");
}

#[test]
fn equally_specific_rules_go_to_the_first_in_the_file() {
    let a = "[[rules]]\nname = \"a\"\nscope = \"*/org/app\"\nrequire = \"allow\"\n";
    let b = "[[rules]]\nname = \"b\"\nscope = \"r.io/*/app\"\nrequire = \"allow\"\n";
    assert_eq!(winner(&policy(&format!("{a}{b}")), "r.io/org/app"), "a");
    assert_eq!(winner(&policy(&format!("{b}{a}")), "r.io/org/app"), "b");
}

#[test]
fn default_applies_when_nothing_matches() {
    let p = policy("[[rules]]\nscope = \"r.io/a\"\nrequire = \"allow\"\n");
    let d = p.decide("r.io", "b");
    assert_eq!(d.rule_id(), RuleId::Default);
    assert_eq!(d.pattern(), None);
    assert!(
        matches!(d.requirement(), Requirement::Reject { message: Some(m) } if m == "nothing matched")
    );
    assert_eq!(
        d.why(),
        "no rule's scope matches r.io/b; the default applies"
    );
}

#[test]
fn each_requirement_and_its_settings() {
    let p = policy(
        r#"
[[rules]]
scope = "r.io/allowed"
require = "allow"
mode = "audit"

[[rules]]
name = "blocked"
scope = "r.io/blocked"
require = "reject"
message = "use r.io/allowed instead"

[[rules]]
name = "bare reject"
scope = "r.io/bare"
require = "reject"

[[rules]]
name = "signed default settings"
scope = "r.io/signed"
require = "signed"

[[rules]]
name = "signed custom"
scope = "hub.io/**"
require = "signed"
gun = "docker.io/{repository}"
roles = ["targets/ci", "targets"]
digest_pulls = "signed-only"
mode = "audit"
[rules.pinning]
tofu = false
"#,
    );
    let d = p.decide("r.io", "allowed");
    assert!(matches!(d.requirement(), Requirement::Allow));
    assert_eq!(
        (d.rule_id(), d.rule_name(), d.pattern()),
        (RuleId::Rule(0), "r.io/allowed", Some("r.io/allowed"))
    );
    assert_eq!(d.mode(), Mode::Audit);

    assert_eq!(
        d.label(),
        "rule \"r.io/allowed\" (rules[0], scope r.io/allowed)"
    );
    assert_eq!(p.decide("q.io", "x").label(), "the default rule");

    let d = p.decide("r.io", "blocked");
    assert!(
        matches!(d.requirement(), Requirement::Reject { message: Some(m) } if m == "use r.io/allowed instead")
    );
    assert_eq!((d.rule_name(), d.mode()), ("blocked", Mode::Enforce));
    assert!(matches!(
        p.decide("r.io", "bare").requirement(),
        Requirement::Reject { message: None }
    ));

    let d = p.decide("r.io", "signed");
    let Requirement::Signed(s) = d.requirement() else {
        panic!("{:?}", d.requirement())
    };
    let s = s.notary().expect("a Notary verifier");
    assert_eq!(
        s.trust_server().name(),
        "local",
        "the only trust server is the implicit one"
    );
    assert_eq!(s.gun("R.io", "signed"), "r.io/signed");
    assert_eq!(
        s.roles(),
        &RoleRequirement::FirstOf(vec!["targets/releases".into(), "targets".into()])
    );
    assert!(s.pinning().tofu());
    assert_eq!(
        (d.mode(), d.digest_pulls()),
        (Mode::Enforce, DigestPulls::Allow)
    );

    let d = p.decide("hub.io", "library/alpine");
    let Requirement::Signed(s) = d.requirement() else {
        panic!()
    };
    let s = s.notary().expect("a Notary verifier");
    assert_eq!(
        s.gun("hub.io", "library/alpine"),
        "docker.io/library/alpine"
    );
    assert_eq!(
        s.roles(),
        &RoleRequirement::FirstOf(vec!["targets/ci".into(), "targets".into()])
    );
    assert!(!s.pinning().tofu());
    assert_eq!(
        (d.mode(), d.digest_pulls()),
        (Mode::Audit, DigestPulls::SignedOnly)
    );
}

#[test]
fn several_trust_servers_are_selected_by_name() {
    let p = Policy::from_str(
        "[trust_servers.a]\nurl = \"https://a.example.com\"\n[trust_servers.b]\nurl = \"https://b.example.com\"\n[[rules]]\nscope = \"r.io/**\"\nrequire = \"signed\"\ntrust_server = \"b\"\n[default]\nrequire = \"allow\"\n",
        "t",
    )
    .unwrap();
    let Requirement::Signed(s) = p.decide("r.io", "x").requirement().clone() else {
        panic!()
    };
    let s = s.notary().expect("a Notary verifier");
    assert_eq!(s.trust_server().url().as_str(), "https://b.example.com/");
    let settings = s
        .trust_server()
        .client_settings(Duration::from_secs(1), Duration::from_secs(2));
    assert_eq!(settings.base_url.as_str(), "https://b.example.com/");
    assert_eq!(
        (settings.connect_timeout, settings.request_timeout),
        (Duration::from_secs(1), Duration::from_secs(2))
    );
    assert!(settings.credentials.is_none() && settings.ca_file.is_none());
    assert_eq!(p.trust_servers().len(), 2);
}

#[test]
fn why_names_the_matches_and_the_winning_criterion() {
    let p = policy("[[rules]]\nname = \"all\"\nscope = \"**\"\nrequire = \"allow\"\n[[rules]]\nname = \"org\"\nscope = \"r.io/org/**\"\nrequire = \"allow\"\n[[rules]]\nscope = \"r.io/**\"\nrequire = \"allow\"\n");
    let d = p.decide("r.io", "org/app");
    assert_eq!(
        d.why(),
        "rules[1] \"org\" (scope r.io/org/**) matches r.io/org/app; it wins over rules[2] (scope r.io/**) by more literal segments (2 literal, 1 `**`, 0 `*` vs 1 literal, 1 `**`, 0 `*`); also matched: rules[0] \"all\" (scope **)"
    );
    let p = policy("[[rules]]\nname = \"org\"\nscope = \"r.io/org/**\"\nrequire = \"allow\"\n");
    assert_eq!(
        p.decide("r.io", "org/x").why(),
        "rules[0] \"org\" (scope r.io/org/**) matches r.io/org/x; it is the only matching rule"
    );
}

#[test]
fn explain_names_the_rule_and_what_it_requires() {
    let p = policy("[[rules]]\nname = \"org images\"\nscope = \"r.io/org/**\"\nrequire = \"signed\"\ndigest_pulls = \"signed-only\"\n[[rules]]\nscope = \"r.io/**\"\nrequire = \"allow\"\n");
    let out = explain(&p, "r.io/org/app:1.0").unwrap();
    assert!(
        out.contains("rule:         rules[0] \"org images\" (scope r.io/org/**)"),
        "{out}"
    );
    assert!(out.contains("why:          rules[0] \"org images\" (scope r.io/org/**) matches r.io/org/app; it wins over rules[1]"), "{out}");
    assert!(out.contains("requirement:  signed"), "{out}");
    assert!(
        out.contains("signed by:  rules[0]\n  verifier rules[0] (notary):"),
        "{out}"
    );
    assert!(
        out.contains("trust server: local (http://127.0.0.1:4443/)"),
        "{out}"
    );
    assert!(out.contains("GUN:          r.io/org/app"), "{out}");
    assert!(
        out.contains("roles:        first of [targets/releases, targets]"),
        "{out}"
    );
    assert!(out.contains("root trust:   trust on first use"), "{out}");
    assert!(out.contains("digest pulls: signed-only"), "{out}");
    assert!(
        out.contains("tag \"1.0\" is served only as the digest its signers signed"),
        "{out}"
    );

    let by_digest = explain(&p, "r.io/org/app@sha256:0000").unwrap();
    assert!(
        by_digest.contains("served only if that digest was reached through a verified tag"),
        "{by_digest}"
    );

    let out = explain(&p, "q.io/x").unwrap();
    assert!(out.contains("rule:         default"), "{out}");
    assert!(out.contains("message:    nothing matched"), "{out}");
    assert!(out.contains("refused (403 DENIED)"), "{out}");

    assert!(explain(&p, "alpine")
        .unwrap_err()
        .contains("expected registry/repository"));
}

#[test]
fn explain_file_loads_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(
        &path,
        format!("{HEAD}[[rules]]\nname = \"mine\"\nscope = \"r.io/*\"\nrequire = \"allow\"\n"),
    )
    .unwrap();
    let out = trustgate::policy::explain_file(&path, "r.io/app:latest").unwrap();
    assert!(out.contains("rules[0] \"mine\""), "{out}");
    std::fs::write(&path, "[default]\nrequire = \"nope\"\n").unwrap();
    let err = trustgate::policy::explain_file(&path, "r.io/app").unwrap_err();
    assert!(err.contains(":2: default.require: expected"), "{err}");
}

#[test]
fn dotted_keys_and_full_tables_are_equivalent() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("root.pem");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/policy/certs/example-org-root.pem"
        ),
        &pem,
    )
    .unwrap();
    let text = format!(
        "{HEAD}[[rules]]\nscope = \"r.io/a\"\nrequire = \"signed\"\npinning.tofu = false\n\n[[rules]]\nscope = \"r.io/b\"\nrequire = \"signed\"\n[rules.pinning.root_certs]\n\"r.io/b\" = [\"root.pem\"]\n"
    );
    let p = Policy::from_str_in(&text, "t", dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let Requirement::Signed(a) = p.decide("r.io", "a").requirement().clone() else {
        panic!()
    };
    let a = a.notary().expect("a Notary verifier");
    assert!(!a.pinning().tofu());
    let Requirement::Signed(b) = p.decide("r.io", "b").requirement().clone() else {
        panic!()
    };
    let b = b.notary().expect("a Notary verifier");
    assert!(
        matches!(b.pinning().pin_for("r.io/b"), trustgate::policy::Pin::Certs(c) if c.len() == 1)
    );
    assert!(
        b.pinning().tofu(),
        "tofu defaults to true when the pinning table omits it"
    );
}
