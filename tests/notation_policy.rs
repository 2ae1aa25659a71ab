//! The Notation CLI's own files: `trustpolicy.oci.json` / `trustpolicy.json` validation
//! (notation-go `verifier/trustpolicy`) and the `truststore/x509/...` directory
//! (`verifier/truststore`).

mod notation_common;

use std::path::Path;

use notation_common::*;
use trustgate::notation::policy::{self, Action, Level, StoreRef, StoreType};
use trustgate::notation::truststore::TrustStore;
use trustgate::notation::Check;

fn err(doc: &str) -> String {
    policy::parse("tp.json", doc.as_bytes())
        .unwrap_err()
        .to_string()
}

fn one(statement: &str) -> String {
    format!(r#"{{"version":"1.0","trustPolicies":[{statement}]}}"#)
}

const OK: &str = r#"{"name":"a","registryScopes":["registry.example/a"],"signatureVerification":{"level":"strict","override":{"revocation":"skip"}},"trustStores":["ca:s"],"trustedIdentities":["*"]}"#;

#[test]
fn policy_errors_name_the_file_statement_and_field() {
    let cases = [
        (r#"{"version":"2.0","trustPolicies":[]}"#.to_string(), "tp.json: `version` \"2.0\" is not supported"),
        (r#"{"version":"1.0","trustPolicies":[]}"#.to_string(), "`trustPolicies` has no statement"),
        (one(&OK.replace("\"strict\"", "\"stric\"")), "trustPolicies[0] (\"a\").signatureVerification.level: \"stric\""),
        (one(&OK.replace(r#""revocation":"skip""#, r#""revocation":"skip","integrity":"log""#)), ".signatureVerification.override.integrity: integrity cannot be overridden"),
        (one(&OK.replace(r#""revocation":"skip""#, r#""revocation":"skip","expiry":"skip""#)), "override.expiry: expiry cannot be skipped"),
        (one(&OK.replace("registry.example/a", "registry.example/*")), "registryScopes[0]: \"registry.example/*\" uses a wildcard"),
        (one(&OK.replace("registry.example/a", "alpine")), "registryScopes[0]: \"alpine\" is not a fully qualified repository"),
        (one(&OK.replace(r#"["registry.example/a"]"#, r#"["*","registry.example/a"]"#)), "\"*\" cannot be combined"),
        (one(&OK.replace("ca:s", "cA:s")), "trustStores[0]: \"cA\" is not ca, signingAuthority or tsa"),
        (one(&OK.replace("ca:s", "ca:../s")), "trustStores[0]: store name \"../s\""),
        (one(&OK.replace(r#"["*"]"#, r#"["x509.subject: C=US, O=x"]"#)), "trustedIdentities[0]: \"C=US, O=x\": mandatory attribute ST is missing"),
        (one(&OK.replace(r#"["*"]"#, r#"["x509.subject: C=US, ST=WA, O=x", "x509.subject: C=US, ST=WA, O=x, CN=y"]"#)), "overlaps with"),
        (one(&OK.replace(r#"["*"]"#, r#"["*", "x509.subject: C=US, ST=WA, O=x"]"#)), "trustedIdentities: \"*\" cannot be combined"),
        (one(&OK.replace(r#""trustStores":["ca:s"],"#, "")), "both trustStores and trustedIdentities must be given"),
        (one(&OK.replace("\"registryScopes\"", "\"registryScope\"")), "malformed trust policy: unknown field `registryScope`"),
        (one(&OK.replace("\"override\"", "\"overide\"")), "unknown field `overide`"),
        (one(r#"{"name":"g","registryScopes":["*"],"signatureVerification":{"level":"skip"}}"#), "\"skip\" is not allowed with the global scope"),
        (one(r#"{"name":"s","registryScopes":["r.example/a"],"signatureVerification":{"level":"skip","override":{"expiry":"log"}}}"#), "level \"skip\" cannot be customised"),
        (format!(r#"{{"version":"1.0","trustPolicies":[{OK},{}]}}"#, OK.replace("\"a\"", "\"b\"")), "trustPolicies[1] (\"b\").registryScopes: \"registry.example/a\" is also in statement \"a\""),
        (format!(r#"{{"version":"1.0","trustPolicies":[{OK},{OK}]}}"#), "trustPolicies[1].name: \"a\" is used by more than one statement"),
    ];
    for (doc, want) in cases {
        let e = err(&doc);
        assert!(e.contains(want), "want {want:?} in {e:?}");
    }
}

#[test]
fn levels_and_overrides_follow_the_matrix() {
    let p = policy::parse("tp.json", one(OK).as_bytes()).unwrap();
    let st = &p.statements[0];
    assert_eq!(st.level, Level::Strict);
    assert_eq!(st.action(Check::Revocation), Action::Skip);
    // Revocation enforced parses, as in notation-go (checking it needs the verifier's CRLs).
    let p = policy::parse(
        "tp.json",
        one(&OK.replace(r#","override":{"revocation":"skip"}"#, "")).as_bytes(),
    )
    .unwrap();
    assert_eq!(p.statements[0].action(Check::Revocation), Action::Enforce);
    assert_eq!(st.action(Check::Expiry), Action::Enforce);
    let p = policy::parse(
        "tp.json",
        one(&OK.replace("strict", "permissive").replace(
            r#""revocation":"skip""#,
            r#""authenticity":"log","revocation":"log""#,
        ))
        .as_bytes(),
    )
    .unwrap();
    let st = &p.statements[0];
    assert_eq!(st.action(Check::Integrity), Action::Enforce);
    assert_eq!(st.action(Check::Authenticity), Action::Log);
    assert_eq!(st.action(Check::AuthenticTimestamp), Action::Log);
    // audit already logs revocation, so it loads without an override.
    let audit = one(&OK
        .replace("strict", "audit")
        .replace(r#","override":{"revocation":"skip"}"#, ""));
    let p = policy::parse("tp.json", audit.as_bytes()).unwrap();
    assert_eq!(p.statements[0].action(Check::Authenticity), Action::Log);
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// A Notation configuration directory as the CLI lays it out, read unchanged, then used.
#[test]
fn notation_config_directory_is_accepted_as_the_cli_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let ca1 = ca("Test CA");
    let s = leaf(&ca1, LeafSpec::default());
    // PEM in one file, DER in another (notation-core-go ReadCertificateFile reads both).
    write(
        &root.join("truststore/x509/ca/acme/root.pem"),
        pem(ca1.cert.der()).as_bytes(),
    );
    write(
        &root.join("truststore/x509/ca/acme/alpine.crt"),
        &fixture("notation-go/TestTimestamp.crt"),
    );
    write(
        &root.join("truststore/x509/ca/acme/der.cer"),
        ca("Other CA").cert.der(),
    );
    write(
        &root.join("trustpolicy.json"),
        format!(r#"{{"version":"1.0","trustPolicies":[{{"name":"acme","registryScopes":["{SCOPE}"],"signatureVerification":{{"level":"strict","override":{{"revocation":"log"}}}},"trustStores":["ca:acme"],"trustedIdentities":["x509.subject: C=US, ST=WA, O=trustgate-test"]}}]}}"#).as_bytes(),
    );
    // The older trustpolicy.json is read when trustpolicy.oci.json is absent.
    let p = policy::load_from_config_dir(root).unwrap();
    let store = TrustStore::load(&root.join("truststore"), &p).unwrap();
    let acme = StoreRef {
        kind: StoreType::Ca,
        name: "acme".into(),
    };
    assert_eq!(store.certificates(&acme).unwrap().len(), 3);
    let env = jws(&s, &payload_for(&target()), &Headers::default());
    let v = run(
        &env,
        JWS,
        &p,
        &store,
        &target(),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    assert_eq!(
        v.logged.len(),
        1,
        "revocation not checked is recorded: {:?}",
        v.logged
    );
    // The same through the facade the enforce layer calls.
    let cfg = trustgate::notation::config::NotationConfig::load(root, None).unwrap();
    let v = cfg
        .verify(&target(), SCOPE, &env, JWS, time::OffsetDateTime::now_utc())
        .unwrap();
    assert_eq!(v.statement, "acme");
    assert_eq!(cfg.thumbprints(SCOPE).len(), 3);
    assert!(cfg.thumbprints("registry.example/unlisted").is_empty());
    // trustpolicy.oci.json wins over trustpolicy.json.
    write(&root.join("trustpolicy.oci.json"), b"{}");
    let e = policy::load_from_config_dir(root).unwrap_err().to_string();
    assert!(
        e.contains("trustpolicy.oci.json: `version` is missing"),
        "{e}"
    );
}

#[test]
fn trust_store_refusals_name_the_path() {
    let p = policy::parse(
        "tp.json",
        one(&OK.replace(r#"["ca:s"]"#, r#"["ca:s","tsa:t"]"#)).as_bytes(),
    )
    .unwrap();
    let ca1 = ca("Test CA");
    let fresh = || {
        let d = tempfile::tempdir().unwrap();
        write(
            &d.path().join("x509/ca/s/root.pem"),
            pem(ca1.cert.der()).as_bytes(),
        );
        write(
            &d.path().join("x509/tsa/t/root.pem"),
            pem(ca1.cert.der()).as_bytes(),
        );
        d
    };
    let d = fresh();
    TrustStore::load(d.path(), &p).unwrap();

    // A missing store.
    let d = fresh();
    std::fs::remove_dir_all(d.path().join("x509/tsa/t")).unwrap();
    let e = TrustStore::load(d.path(), &p).unwrap_err().to_string();
    assert!(e.contains("x509/tsa/t: trust store cannot be read"), "{e}");
    // An empty store.
    let d = fresh();
    std::fs::remove_file(d.path().join("x509/tsa/t/root.pem")).unwrap();
    let e = TrustStore::load(d.path(), &p).unwrap_err().to_string();
    assert!(e.contains("no x509 certificate"), "{e}");
    // A symlinked certificate, and a symlinked store.
    let d = fresh();
    std::os::unix::fs::symlink(
        d.path().join("x509/ca/s/root.pem"),
        d.path().join("x509/ca/s/link.pem"),
    )
    .unwrap();
    let e = TrustStore::load(d.path(), &p).unwrap_err().to_string();
    assert!(e.contains("link.pem: not a regular file"), "{e}");
    let d = fresh();
    std::fs::rename(d.path().join("x509/ca/s"), d.path().join("x509/ca/real")).unwrap();
    std::os::unix::fs::symlink(d.path().join("x509/ca/real"), d.path().join("x509/ca/s")).unwrap();
    let e = TrustStore::load(d.path(), &p).unwrap_err().to_string();
    assert!(e.contains("symlinks are not supported"), "{e}");
    // A subdirectory.
    let d = fresh();
    std::fs::create_dir(d.path().join("x509/ca/s/sub")).unwrap();
    let e = TrustStore::load(d.path(), &p).unwrap_err().to_string();
    assert!(e.contains("sub: not a regular file"), "{e}");
    // Not a certificate.
    let d = fresh();
    write(&d.path().join("x509/ca/s/junk.crt"), b"hello");
    let e = TrustStore::load(d.path(), &p).unwrap_err().to_string();
    assert!(e.contains("junk.crt: neither PEM nor DER"), "{e}");
    // A leaf that is neither a CA nor self-signed; a tsa store with a non-root.
    let s = leaf(&ca1, LeafSpec::default());
    let d = fresh();
    write(
        &d.path().join("x509/ca/s/leaf.pem"),
        pem(&s.chain[0]).as_bytes(),
    );
    let e = TrustStore::load(d.path(), &p).unwrap_err().to_string();
    assert!(
        e.contains("leaf.pem: certificate #1: neither a CA certificate nor a self-signed"),
        "{e}"
    );
    let d = fresh();
    write(
        &d.path().join("x509/tsa/t/leaf.pem"),
        pem(&s.chain[0]).as_bytes(),
    );
    let e = TrustStore::load(d.path(), &p).unwrap_err().to_string();
    assert!(
        e.contains("tsa trust store holds root CA certificates only"),
        "{e}"
    );
}
