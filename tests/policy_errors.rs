//! Load errors: every problem is reported, each with file, line, field and what was expected;
//! a bad policy never loads partly.
use trustgate::policy::{Policy, PolicyErrors};

fn errors(text: &str) -> Vec<String> {
    let e: PolicyErrors = Policy::from_str(text, "policy.toml").expect_err("must not load");
    e.iter().map(|e| e.to_string()).collect()
}

fn one(text: &str) -> String {
    let e = errors(text);
    assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
    e.into_iter().next().unwrap()
}

const SERVER: &str = "[trust_servers.local]\nurl = \"http://127.0.0.1:4443\"\n";

#[test]
fn all_errors_are_collected_with_line_and_field() {
    let text = format!(
        r#"{SERVER}
[[rules]]
scope = "r.io/a/*"
require = "signed"
mode = "enforcing"

[[rules]]
scope = "r.io/b/**"
require = "alow"

[[rules]]
scope = "r.io/c"
require = "allow"
digest_pulls = "signed_only"
colour = "blue"
"#
    );
    assert_eq!(
        errors(&text),
        vec![
            r#"policy.toml:7: rules[0].mode: expected "enforce" or "audit", found "enforcing""#,
            r#"policy.toml:11: rules[1].require: expected "allow", "reject" or "signed", found "alow""#,
            r#"policy.toml:16: rules[2].digest_pulls: expected "allow" or "signed-only", found "signed_only""#,
            r#"policy.toml:17: rules[2].colour: unknown key; expected one of name, scope, require, message, mode, digest_pulls, trust_server, gun, roles, require_all, pinning, signed_by"#,
        ]
    );
}

#[test]
fn unknown_keys_everywhere_are_errors() {
    let e = errors(
        "versoin = 1\n[trust_servers.local]\nurl = \"http://127.0.0.1:4443\"\nuser = \"x\"\n[default]\nrequire = \"signed\"\n[default.pinning]\ntofu = false\ncerts = {}\n",
    );
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(e[0].starts_with("policy.toml:1: versoin: unknown key; expected one of version, trust_servers, verifiers, default, rules"), "{}", e[0]);
    assert!(
        e[1].starts_with("policy.toml:4: trust_servers.local.user: unknown key"),
        "{}",
        e[1]
    );
    assert!(e[2].starts_with("policy.toml:9: default.pinning.certs: unknown key; expected one of tofu, ca, root_certs"), "{}", e[2]);
}

#[test]
fn syntax_error_names_the_line() {
    let e = one("[default]\nrequire = \"allow\"\nmode = enforce\n");
    assert!(e.starts_with("policy.toml:3: invalid TOML:"), "{e}");
    assert!(!e.contains('\n'), "one line per error: {e}");
}

#[test]
fn wrong_types_are_reported() {
    let e = errors("version = \"1\"\n[default]\nrequire = true\n");
    assert_eq!(
        e,
        vec![
            "policy.toml:1: version: expected an integer, found \"1\"",
            "policy.toml:3: default.require: expected \"allow\", \"reject\" or \"signed\", found true",
        ]
    );
    assert_eq!(
        one("version = 2\n"),
        "policy.toml:1: version: expected 1, found 2"
    );
}

#[test]
fn bad_scopes_are_reported() {
    let e = errors(
        "[[rules]]\nscope = \"r.io/team-*\"\nrequire = \"allow\"\n[[rules]]\nscope = \"r.io\"\nrequire = \"allow\"\n[[rules]]\nrequire = \"allow\"\n",
    );
    assert_eq!(e.len(), 3, "{e:#?}");
    assert_eq!(e[0], "policy.toml:2: rules[0].scope: expected `*` or `**` only as a whole segment (segment \"team-*\"), found \"r.io/team-*\"");
    assert_eq!(e[1], "policy.toml:5: rules[1].scope: expected `<registry>/<repository>` (at least two segments, or a `**`), found \"r.io\"");
    assert_eq!(e[2], "policy.toml:7: rules[2].scope: missing; expected a pattern such as \"registry.example.com/org/**\"");
    assert_eq!(
        one("[[rules]]\nname = \" \"\nscope = \"r.io/a\"\nrequire = \"allow\"\n"),
        "policy.toml:2: rules[0].name: expected a non-empty name, found \" \""
    );
}

#[test]
fn duplicate_scopes_and_names_are_conflicts() {
    let e = errors(
        "[[rules]]\nname = \"a\"\nscope = \"r.io/x\"\nrequire = \"allow\"\n[[rules]]\nname = \"a\"\nscope = \"r.io/x\"\nrequire = \"reject\"\n",
    );
    assert_eq!(
        e,
        vec![
            "policy.toml:6: rules[1].name: rule name \"a\" is already used by rules[0] (line 2)",
            "policy.toml:7: rules[1].scope: same scope \"r.io/x\" as rules[0] (line 3); only the first could ever apply",
        ]
    );
}

#[test]
fn signed_settings_on_other_requirements_are_conflicts() {
    let e = errors(&format!(
        "{SERVER}[default]\nrequire = \"allow\"\nroles = [\"targets\"]\ndigest_pulls = \"signed-only\"\nmessage = \"x\"\n"
    ));
    assert_eq!(
        e,
        vec![
            "policy.toml:5: default.roles: only valid with require = \"signed\"",
            "policy.toml:6: default.digest_pulls: \"signed-only\" needs require = \"signed\"",
            "policy.toml:7: default.message: only valid with require = \"reject\"",
        ]
    );
}

#[test]
fn trust_server_references_and_urls() {
    assert_eq!(
        one("[default]\nrequire = \"signed\"\n"),
        "policy.toml:1: default.trust_server: missing; expected a [trust_servers.<name>] table and `trust_server = \"<name>\"`"
    );
    assert_eq!(
        one(&format!("{SERVER}[default]\nrequire = \"signed\"\ntrust_server = \"corp\"\n")),
        "policy.toml:5: default.trust_server: expected one of the [trust_servers] names: local, found \"corp\""
    );
    assert_eq!(
        one("[trust_servers.a]\nurl = \"ftp://x\"\n"),
        "policy.toml:2: trust_servers.a.url: expected an http:// or https:// URL, found \"ftp://x\""
    );
}

#[test]
fn missing_url_and_missing_ca_file_both_reported() {
    let e = errors("[trust_servers.a]\nca_file = \"/nonexistent/ca.pem\"\n");
    assert_eq!(
        e,
        vec![
            "policy.toml:1: trust_servers.a.url: missing; expected an http:// or https:// URL of a Notary server",
            "policy.toml:2: trust_servers.a.ca_file: file /nonexistent/ca.pem: No such file or directory (os error 2)",
        ]
    );
}

#[test]
fn credentials_rules() {
    let e = errors(
        "[trust_servers.a]\nurl = \"http://notary.example.com\"\nusername = \"u\"\npassword_env = \"TRUSTGATE_TEST_UNSET_VARIABLE\"\n",
    );
    assert_eq!(
        e,
        vec![
            "policy.toml:3: trust_servers.a.username: credentials need an https:// trust server URL (or a loopback one)",
            "policy.toml:4: trust_servers.a.password_env: expected a set environment variable, found TRUSTGATE_TEST_UNSET_VARIABLE is unset or empty",
        ]
    );
    assert_eq!(
        one("[trust_servers.a]\nurl = \"https://n.example.com\"\npassword_file = \"p\"\n"),
        "policy.toml:3: trust_servers.a.password_file: a password needs a `username`"
    );
    assert_eq!(
        one("[trust_servers.a]\nurl = \"https://n.example.com\"\nusername = \"u\"\n"),
        "policy.toml:3: trust_servers.a.password_env: missing; expected `password_env` or `password_file` next to `username`"
    );
}

#[test]
fn roles_and_gun_are_validated() {
    let e = errors(&format!(
        "{SERVER}[[rules]]\nscope = \"r.io/a\"\nrequire = \"signed\"\nroles = [\"releases\", \"targets\", \"targets\", 3]\ngun = \"{{registry}}/x\"\n[[rules]]\nscope = \"r.io/b\"\nrequire = \"signed\"\nroles = []\nrequire_all = [\"targets\"]\n"
    ));
    assert_eq!(
        e,
        vec![
            "policy.toml:6: rules[0].roles[3]: expected a string, found 3",
            "policy.toml:6: rules[0].roles[0]: expected \"targets\" or a delegation \"targets/<name>\" ([-a-z0-9_/]), found \"releases\"",
            "policy.toml:6: rules[0].roles[2]: expected each role once, found \"targets\" twice",
            "policy.toml:7: rules[0].gun: expected a GUN template containing {repository}, found \"{registry}/x\"",
            "policy.toml:12: rules[1].require_all: give `roles` (first match wins) or `require_all`, not both",
        ]
    );
    let e = one(&format!(
        "{SERVER}[default]\nrequire = \"signed\"\nrequire_all = [\"targets/a\", \"targets/a\"]\n"
    ));
    assert_eq!(
        e,
        "policy.toml:5: default.require_all[1]: expected each role once, found \"targets/a\" twice"
    );
}

#[test]
fn referenced_pem_files_must_exist_and_hold_certificates() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("key.pem"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("junk.pem"), "not a certificate\n").unwrap();
    let text = format!(
        "{SERVER}[default]\nrequire = \"signed\"\n[default.pinning]\ntofu = false\nca = \"key.pem\"\nroot_certs = {{ \"r.io/*\" = [\"junk.pem\", \"missing.pem\"], \"r*x\" = [\"junk.pem\"] }}\n"
    );
    let e: Vec<String> = Policy::from_str_in(&text, "policy.toml", dir.path())
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect();
    let d = dir.path().display();
    assert_eq!(
        e,
        vec![
            format!("policy.toml:7: default.pinning.ca: file {d}/key.pem: holds a \"PRIVATE KEY\" block; only CERTIFICATE blocks are accepted"),
            format!("policy.toml:8: default.pinning.root_certs.\"r.io/*\"[0]: file {d}/junk.pem: holds no PEM certificate"),
            format!("policy.toml:8: default.pinning.root_certs.\"r.io/*\"[1]: file {d}/missing.pem: No such file or directory (os error 2)"),
            "policy.toml:8: default.pinning.root_certs.\"r*x\": expected a GUN, or a GUN prefix ending in `*`, found \"r*x\"".to_string(),
        ]
    );
}

#[test]
fn unreadable_file_is_an_error_naming_the_file() {
    let e = Policy::load("/nonexistent/policy.toml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "/nonexistent/policy.toml: cannot read the file: No such file or directory (os error 2)"
    );
}

#[test]
fn missing_default_refuses_uncovered_images() {
    let p = Policy::from_str("[[rules]]\nscope = \"r.io/a\"\nrequire = \"allow\"\n", "p").unwrap();
    let d = p.decide("r.io", "b");
    assert!(matches!(
        d.requirement(),
        trustgate::policy::Requirement::Reject { message: Some(m) } if m == "no policy rule covers this image"
    ));
}

#[test]
fn check_file_prints_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[default]\nrequire = \"allow\"\nmode = \"enforcing\"\nextra = 1\n",
    )
    .unwrap();
    let out = trustgate::policy::check_file(&path).unwrap_err();
    let p = path.display();
    assert_eq!(
        out,
        format!("{p}:3: default.mode: expected \"enforce\" or \"audit\", found \"enforcing\"\n{p}:4: default.extra: unknown key; expected one of require, message, mode, digest_pulls, trust_server, gun, roles, require_all, pinning, signed_by")
    );
}

/// Stands in for a fuzz target: every prefix of every example, and every example with one
/// byte replaced by a quote, loads or fails with errors — never panics.
#[test]
fn truncated_or_corrupted_examples_never_panic() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/policy");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for cut in (0..text.len()).filter(|&i| text.is_char_boundary(i)) {
            if let Err(e) = Policy::from_str_in(&text[..cut], "p.toml", std::path::Path::new(dir)) {
                assert!(!e.is_empty());
                assert!(e.iter().all(|e| e.line.is_some()), "{e}");
            }
            let mut bytes = text.clone().into_bytes();
            if bytes[cut].is_ascii() {
                bytes[cut] = b'"';
                let corrupted = String::from_utf8(bytes).unwrap();
                let _ = Policy::from_str_in(&corrupted, "p.toml", std::path::Path::new(dir));
            }
        }
    }
}

#[test]
fn cli_arguments_parse_and_run() {
    use clap::Parser;
    use trustgate::policy::cli::{run, PolicyArgs};
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        policy: PolicyArgs,
    }
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/policy/signed-only-org.toml");
    let cli = Cli::try_parse_from(["policy", "check", file]).unwrap();
    let out = run(&cli.policy).unwrap();
    assert!(
        out.ends_with("signed-only-org.toml: OK: 2 rule(s), 1 trust server(s); default: reject"),
        "{out}"
    );
    let cli = Cli::try_parse_from(["policy", "explain", file, "registry.example.com/org/app:v1"])
        .unwrap();
    let out = run(&cli.policy).unwrap();
    assert!(out.contains("rules[0] \"org images\""), "{out}");
}
