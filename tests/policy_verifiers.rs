//! `[verifiers.<name>]` and `signed_by`: what loads, what each error says (file:line:field),
//! and that every policy written before them still means one Notary verifier.
use std::path::Path;

use trustgate::policy::{Combine, Policy, Requirement, VerifierKind};

const KEY: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAENptdY/l3nB0yqkXLBWkZWQwo6+cu\nOSWS1X9vPavpiQOoTTGC0xX57OojUadxF1cdQmrsiReWg2Wn4FneJfa8xw==\n-----END PUBLIC KEY-----\n";

fn dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("release.pub"), KEY).unwrap();
    std::fs::write(
        d.path().join("cert.pem"),
        include_str!("../policy/certs/example-root-ca.pem"),
    )
    .unwrap();
    d
}

fn load(dir: &Path, text: &str) -> Result<Policy, Vec<String>> {
    Policy::from_str_in(text, "policy.toml", dir)
        .map_err(|e| e.iter().map(|e| e.to_string()).collect())
}

const SERVER: &str = "[trust_servers.local]\nurl = \"http://127.0.0.1:4443\"\n";

#[test]
fn legacy_rules_mean_their_own_notary_verifier() {
    let d = dir();
    let p = load(
        d.path(),
        &format!(
            "{SERVER}[[rules]]\nscope = \"r.io/**\"\nrequire = \"signed\"\nroles = [\"targets\"]\n"
        ),
    )
    .unwrap();
    let dec = p.decide("r.io", "x");
    let Requirement::Signed(s) = dec.requirement() else {
        panic!()
    };
    assert_eq!(s.combine(), Combine::AnyOf);
    assert_eq!(s.verifiers().len(), 1);
    assert_eq!(s.verifiers()[0].name(), "rules[0]");
    assert!(
        matches!(s.verifiers()[0].kind(), VerifierKind::Notary(n) if n.roles().roles() == ["targets"])
    );
}

#[test]
fn named_verifiers_combine_any_of_all_of_or_one() {
    let d = dir();
    let text = format!(
        "{SERVER}[verifiers.dct]\ntype = \"notary\"\n[verifiers.release]\ntype = \"cosign\"\nkeys = [\"release.pub\", \"release.pub\"]\ntlog = false\n\
[[rules]]\nscope = \"r.io/a\"\nrequire = \"signed\"\nsigned_by = {{ any_of = [\"release\", \"dct\"] }}\n\
[[rules]]\nscope = \"r.io/b\"\nrequire = \"signed\"\nsigned_by = {{ all_of = [\"dct\", \"release\"] }}\n\
[[rules]]\nscope = \"r.io/c\"\nrequire = \"signed\"\nsigned_by = \"release\"\n"
    );
    let p = load(d.path(), &text).unwrap_or_else(|e| panic!("{e:#?}"));
    let get = |r: &str| {
        let dec = p.decide("r.io", r);
        let Requirement::Signed(s) = dec.requirement().clone() else {
            panic!()
        };
        s
    };
    let a = get("a");
    assert_eq!(a.combine(), Combine::AnyOf);
    assert_eq!(
        a.verifiers().iter().map(|v| v.name()).collect::<Vec<_>>(),
        ["release", "dct"],
        "any_of keeps the written order (it is the order verifiers are asked in)"
    );
    let VerifierKind::Cosign(c) = a.verifiers()[0].kind() else {
        panic!()
    };
    assert_eq!(c.keys().len(), 1, "one key listed twice is one key");
    assert_eq!(get("b").combine(), Combine::AllOf);
    assert_eq!(get("c").verifiers().len(), 1);
}

fn errors(text: &str) -> Vec<String> {
    let d = dir();
    match load(d.path(), text) {
        Ok(_) => panic!("loaded:\n{text}"),
        Err(e) => e,
    }
}

#[test]
fn cosign_verifier_errors_name_line_and_field() {
    let e = errors("[verifiers.release]\ntype = \"cosign\"\nkeys = [\"missing.pub\", \"cert.pem\"]\n\nidentity = \"me@example.com\"\ncolour = 1\n");
    assert_eq!(e.len(), 5, "{e:#?}");
    assert!(
        e[0].starts_with("policy.toml:1: verifiers.release.tlog: missing; expected tlog = false"),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with("policy.toml:3: verifiers.release.keys[0]: file ")
            && e[1].contains("missing.pub"),
        "{}",
        e[1]
    );
    assert!(
        e[2].starts_with("policy.toml:3: verifiers.release.keys[1]: file ")
            && e[2].ends_with(
                "holds a \"CERTIFICATE\" block; only PUBLIC KEY blocks (cosign.pub) are accepted"
            ),
        "{}",
        e[2]
    );
    assert!(e[3].starts_with("policy.toml:5: verifiers.release.identity: is a keyless setting: a keyless verifier names `trusted_root"), "{}", e[3]);
    assert_eq!(
        e[4],
        "policy.toml:6: verifiers.release.colour: unknown key; expected one of type, keys, tlog"
    );

    let e = errors("[verifiers.release]\ntype = \"cosign\"\nkeys = []\ntlog = true\n");
    assert_eq!(
        e,
        [
            "policy.toml:3: verifiers.release.keys: expected at least one PEM public key file, found an empty array",
            "policy.toml:4: verifiers.release.tlog: tlog = true is not supported with keys yet (Rekor entries are verified for keyless verifiers, with a trusted_root); set tlog = false to verify with keys alone",
        ]
    );
    let e = errors("[verifiers.x]\ntype = \"sigstore\"\n[verifiers.y]\nkeys = []\n[verifiers.default]\ntype = \"cosign\"\n");
    assert_eq!(
        e,
        [
            "policy.toml:2: verifiers.x.type: expected \"notary\", \"cosign\" or \"notation\", found \"sigstore\"",
            "policy.toml:3: verifiers.y.type: missing; expected \"notary\", \"cosign\" or \"notation\"",
            "policy.toml:5: verifiers.default: expected a verifier name of letters, digits, '-' and '_' (not \"default\"), found \"default\"",
        ]
    );
}

#[test]
fn notary_verifier_takes_the_inline_fields_and_only_those() {
    let e = errors(&format!("{SERVER}[verifiers.dct]\ntype = \"notary\"\nroles = [\"nope\"]\nkeys = [\"release.pub\"]\n"));
    assert_eq!(
        e,
        [
            "policy.toml:5: verifiers.dct.roles[0]: expected \"targets\" or a delegation \"targets/<name>\" ([-a-z0-9_/]), found \"nope\"",
            "policy.toml:6: verifiers.dct.keys: unknown key; expected one of type, trust_server, gun, roles, require_all, pinning",
        ]
    );
}

#[test]
fn signed_by_errors_name_line_and_field() {
    let v = "[verifiers.release]\ntype = \"cosign\"\nkeys = [\"release.pub\"]\ntlog = false\n";
    let e = errors(&format!("{v}[[rules]]\nscope = \"r.io/a\"\nrequire = \"signed\"\nsigned_by = {{ any_of = [\"release\", \"dtc\", \"release\"] }}\n"));
    assert_eq!(
        e,
        [
            "policy.toml:8: rules[0].signed_by.any_of[1]: expected one of the [verifiers] names: release, found \"dtc\"",
            "policy.toml:8: rules[0].signed_by.any_of[2]: \"release\" is listed twice (line 8)",
        ]
    );
    let e = errors(&format!("{SERVER}{v}[[rules]]\nscope = \"r.io/a\"\nrequire = \"signed\"\nsigned_by = \"release\"\nroles = [\"targets\"]\n[[rules]]\nscope = \"r.io/b\"\nrequire = \"allow\"\nsigned_by = \"release\"\n[[rules]]\nscope = \"r.io/c\"\nrequire = \"signed\"\nsigned_by = {{ any_of = [\"release\"], all_of = [\"release\"] }}\n[[rules]]\nscope = \"r.io/d\"\nrequire = \"signed\"\nsigned_by = {{ all_of = [] }}\n"));
    assert_eq!(
        e,
        [
            "policy.toml:11: rules[0].roles: the rule names its verifiers with `signed_by`; put Notary settings in a [verifiers.<name>] table with type = \"notary\"",
            "policy.toml:15: rules[1].signed_by: only valid with require = \"signed\"",
            "policy.toml:19: rules[2].signed_by.all_of: give `any_of` or `all_of`, not both",
            "policy.toml:23: rules[3].signed_by.all_of: expected at least one verifier name, found an empty array",
        ]
    );
}

fn keyless_dir() -> tempfile::TempDir {
    let d = dir();
    std::fs::copy(
        "tests/fixtures/cosign/keyless/production.trusted_root.json",
        d.path().join("trusted_root.json"),
    )
    .unwrap();
    std::fs::write(d.path().join("bad_root.json"), "{\"mediaType\": 1}").unwrap();
    d
}

#[test]
fn keyless_cosign_verifiers_load_with_both_identity_and_issuer() {
    let d = keyless_dir();
    let p = load(d.path(), "version = 1\n[verifiers.ci]\ntype = \"cosign\"\ntrusted_root = \"trusted_root.json\"\nidentity_regex = 'https://github\\.com/org/.*'\nissuer = \"https://token.actions.githubusercontent.com\"\ngithub_workflow_repository = \"org/repo\"\n[default]\nrequire = \"signed\"\nsigned_by = \"ci\"\n")
        .unwrap_or_else(|e| panic!("{e:#?}"));
    let explained =
        trustgate::policy::explain(&p, "docker.io/org/app:v1").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        explained.contains("transparency log required, SCT required"),
        "{explained}"
    );
    assert!(explained.contains("for identity matching /https://github\\.com/org/.*/ issued by \"https://token.actions.githubusercontent.com\", github_workflow_repository \"org/repo\""), "{explained}");
}

#[test]
fn keyless_cosign_errors_name_line_and_field() {
    let d = keyless_dir();
    let e = match load(d.path(), "[verifiers.ci]\ntype = \"cosign\"\ntrusted_root = \"trusted_root.json\"\nkeys = [\"release.pub\"]\nidentity = \"a@b\"\nidentity_regex = \"a.*\"\n") {
        Ok(_) => panic!("loaded"),
        Err(e) => e,
    };
    assert_eq!(
        e,
        [
            "policy.toml:1: verifiers.ci.issuer: missing; expected issuer = \"<OIDC issuer URL>\" or issuer_regex = \"<regular expression>\" (keyless verification requires both the identity and its issuer)",
            "policy.toml:4: verifiers.ci.keys: give `keys` (keyed verification) or `trusted_root` (keyless), not both; use two verifiers and `signed_by = { any_of = [...] }` to accept either",
            "policy.toml:6: verifiers.ci.identity_regex: give `identity` or `identity_regex`, not both",
        ],
        "{e:#?}"
    );
    let e = load(d.path(), "[verifiers.ci]\ntype = \"cosign\"\ntrusted_root = \"bad_root.json\"\nissuer_regex = \"(\"\nsct = \"no\"\n").err().unwrap();
    assert_eq!(e.len(), 4, "{e:#?}");
    assert!(
        e[0].starts_with("policy.toml:1: verifiers.ci.identity: missing; expected identity = "),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with("policy.toml:3: verifiers.ci.trusted_root: file ")
            && e[1].contains("bad_root.json")
            && e[1].contains("is not a Sigstore trusted root"),
        "{}",
        e[1]
    );
    assert!(
        e[2].starts_with("policy.toml:4: verifiers.ci.issuer_regex: expected a regular expression"),
        "{}",
        e[2]
    );
    assert!(
        e[3].starts_with("policy.toml:5: verifiers.ci.sct: "),
        "{}",
        e[3]
    );
}
