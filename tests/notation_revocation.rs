//! Revocation against operator-provided CRL files (trustgate's `crl_dir`), judged as
//! notation-go `verifyRevocation` judges it: revoked or unknown status fails the check, and
//! the check's action (enforce/log) decides. CAs, leaves and CRLs are made here with rcgen.
mod notation_common;

use std::path::Path;
use std::sync::Arc;

use notation_common::*;
use time::{Duration, OffsetDateTime};
use trustgate::notation::config::NotationConfig;
use trustgate::notation::revocation::CrlSet;
use trustgate::notation::Check;

/// Strict, revocation enforced (no override): what the spec's own example policy says.
const STRICT_REVOCATION: &str = r#""signatureVerification":{"level":"strict"},"trustStores":["ca:test"],"trustedIdentities":["*"]"#;
const PERMISSIVE: &str = r#""signatureVerification":{"level":"permissive"},"trustStores":["ca:test"],"trustedIdentities":["*"]"#;

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn fresh(issuer: &Ca, revoked: &[rcgen::SerialNumber]) -> Vec<u8> {
    crl(
        issuer,
        revoked,
        now() - Duration::hours(1),
        now() + Duration::days(7),
    )
}

/// A CRL directory holding `crls` (DER), loaded.
fn crl_set(dir: &Path, crls: &[Vec<u8>]) -> Arc<CrlSet> {
    for (i, der) in crls.iter().enumerate() {
        std::fs::write(dir.join(format!("{i}.crl")), der).unwrap();
    }
    CrlSet::load(dir).unwrap_or_else(|e| panic!("{e}"))
}

fn verify(
    s: &Signer,
    root: &Ca,
    statement: &str,
    crls: Option<&CrlSet>,
) -> Result<trustgate::notation::verify::Verified, trustgate::notation::verify::Refusal> {
    let env = jws(s, &payload_for(&target()), &Headers::default());
    let r = run_with_crls(
        &env,
        JWS,
        &policy(statement),
        &ca_store(vec![root.cert.der().to_vec()]),
        &target(),
        now(),
        crls,
    );
    // COSE envelopes reach the same check with the same chain.
    let env = cose(s, &payload_for(&target()), &Headers::default());
    let c = run_with_crls(
        &env,
        COSE,
        &policy(statement),
        &ca_store(vec![root.cert.der().to_vec()]),
        &target(),
        now(),
        crls,
    );
    assert_eq!(r.is_ok(), c.is_ok(), "JWS {r:?} vs COSE {c:?}");
    r
}

/// leaf → intermediate → root.
fn three_level() -> (Ca, Ca, Signer) {
    let root = ca("Revocation Root");
    let int = intermediate(&root, "Revocation Intermediate");
    let mut s = leaf(&int, LeafSpec::default());
    s.chain.push(root.cert.der().to_vec());
    (root, int, s)
}

fn refused_for_revocation(
    r: Result<trustgate::notation::verify::Verified, trustgate::notation::verify::Refusal>,
) -> String {
    let e = r.expect_err("must be refused");
    assert_eq!(e.check, Some(Check::Revocation), "{e}");
    e.to_string()
}

#[test]
fn unrevoked_chain_passes_with_crls_for_every_issuer() {
    let (root, int, s) = three_level();
    let dir = tempfile::tempdir().unwrap();
    // Each CRL lists someone else.
    let set = crl_set(
        dir.path(),
        &[
            fresh(&root, &[rcgen::SerialNumber::from(7u64)]),
            fresh(&int, &[rcgen::SerialNumber::from(8u64)]),
        ],
    );
    let v = verify(&s, &root, STRICT_REVOCATION, Some(&set)).unwrap();
    assert!(v.logged.is_empty(), "{:?}", v.logged);
    // A two-certificate chain needs only the root's CRL.
    let root2 = ca("Flat Root");
    let flat = leaf(&root2, LeafSpec::default());
    let dir2 = tempfile::tempdir().unwrap();
    let set2 = crl_set(dir2.path(), &[fresh(&root2, &[])]);
    verify(&flat, &root2, STRICT_REVOCATION, Some(&set2)).unwrap();
}

#[test]
fn a_revoked_leaf_is_refused() {
    let (root, int, s) = three_level();
    let dir = tempfile::tempdir().unwrap();
    let set = crl_set(
        dir.path(),
        &[fresh(&root, &[]), fresh(&int, &[serial_of(&s.chain[0])])],
    );
    let e = refused_for_revocation(verify(&s, &root, STRICT_REVOCATION, Some(&set)));
    assert!(e.contains("is revoked"), "{e}");
    assert!(e.contains("CN=signer"), "{e}");
    assert!(e.contains("KeyCompromise"), "{e}");
    assert!(e.contains("1.crl"), "names the CRL file: {e}");
}

#[test]
fn a_revoked_intermediate_is_refused() {
    let (root, int, s) = three_level();
    let dir = tempfile::tempdir().unwrap();
    let set = crl_set(
        dir.path(),
        &[fresh(&root, &[serial_of(int.cert.der())]), fresh(&int, &[])],
    );
    let e = refused_for_revocation(verify(&s, &root, STRICT_REVOCATION, Some(&set)));
    assert!(e.contains("is revoked"), "{e}");
    assert!(e.contains("Revocation Intermediate"), "{e}");
}

#[test]
fn a_stale_crl_fails_closed() {
    let (root, int, s) = three_level();
    let dir = tempfile::tempdir().unwrap();
    let stale = crl(
        &int,
        &[],
        now() - Duration::days(10),
        now() - Duration::days(3),
    );
    let set = crl_set(dir.path(), &[fresh(&root, &[]), stale]);
    let e = refused_for_revocation(verify(&s, &root, STRICT_REVOCATION, Some(&set)));
    assert!(e.contains("revocation status is unknown"), "{e}");
    assert!(e.contains("expired at"), "{e}");
}

#[test]
fn a_missing_crl_fails_closed() {
    let (root, _int, s) = three_level();
    let dir = tempfile::tempdir().unwrap();
    // The root's CRL covers the intermediate; nothing covers the leaf.
    let set = crl_set(dir.path(), &[fresh(&root, &[])]);
    let e = refused_for_revocation(verify(&s, &root, STRICT_REVOCATION, Some(&set)));
    assert!(e.contains("revocation status is unknown"), "{e}");
    assert!(e.contains("has no CRL issued by"), "{e}");
    assert!(e.contains("Revocation Intermediate"), "{e}");
    // No CRLs at all: unknown, refused under enforce.
    let e = refused_for_revocation(verify(&s, &root, STRICT_REVOCATION, None));
    assert!(e.contains("no crl_dir"), "{e}");
}

#[test]
fn a_crl_signed_by_the_wrong_ca_fails_closed() {
    let (root, _int, s) = three_level();
    // Same name as the intermediate, another key: the CRL names the right issuer but its
    // signature is not the issuer's.
    let impostor = intermediate(&root, "Revocation Intermediate");
    let dir = tempfile::tempdir().unwrap();
    let set = crl_set(dir.path(), &[fresh(&root, &[]), fresh(&impostor, &[])]);
    let e = refused_for_revocation(verify(&s, &root, STRICT_REVOCATION, Some(&set)));
    assert!(e.contains("not signed by the key"), "{e}");
    // A CRL by an unrelated CA is no CRL for this chain.
    let other = ca("Unrelated CA");
    let dir = tempfile::tempdir().unwrap();
    let set = crl_set(dir.path(), &[fresh(&root, &[]), fresh(&other, &[])]);
    let e = refused_for_revocation(verify(&s, &root, STRICT_REVOCATION, Some(&set)));
    assert!(e.contains("has no CRL issued by"), "{e}");
}

#[test]
fn log_level_allows_a_revoked_leaf_and_records_it() {
    let (root, int, s) = three_level();
    let dir = tempfile::tempdir().unwrap();
    let set = crl_set(
        dir.path(),
        &[fresh(&root, &[]), fresh(&int, &[serial_of(&s.chain[0])])],
    );
    for statement in [
        PERMISSIVE.to_string(),
        STRICT_REVOCATION.replace(r#""strict""#, r#""strict","override":{"revocation":"log"}"#),
    ] {
        let v = verify(&s, &root, &statement, Some(&set)).unwrap();
        assert_eq!(v.logged.len(), 1, "{:?}", v.logged);
        assert_eq!(v.logged[0].0, Check::Revocation);
        assert!(v.logged[0].1.contains("is revoked"), "{:?}", v.logged);
        // What the audit event records for the decision.
        let audited = trustgate::signatures::Verified::from_notation("corp", &target(), &v);
        assert!(
            audited
                .identities()
                .contains("logged, not enforced: revocation:")
                && audited.identities().contains("is revoked"),
            "{}",
            audited.identities()
        );
    }
    // skip: not looked at, even with a revoked leaf.
    let skip = STRICT_REVOCATION.replace(
        r#""strict""#,
        r#""strict","override":{"revocation":"skip"}"#,
    );
    let v = verify(&s, &root, &skip, Some(&set)).unwrap();
    assert!(v.logged.is_empty());
}

fn write_config(root: &Path, ca: &Ca, statement: &str) {
    let store = root.join("truststore/x509/ca/test");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("root.crt"), ca.cert.pem()).unwrap();
    std::fs::write(
        root.join("trustpolicy.oci.json"),
        format!(
            r#"{{"version":"1.0","trustPolicies":[{{"name":"p","registryScopes":["{SCOPE}"],{statement}}}]}}"#
        ),
    )
    .unwrap();
}

#[test]
fn enforced_revocation_needs_crls_at_load() {
    let root = ca("Load Root");
    let cfg = tempfile::tempdir().unwrap();
    write_config(cfg.path(), &root, STRICT_REVOCATION);
    let e = NotationConfig::load(cfg.path(), None).unwrap_err();
    assert!(
        e.contains(
            "trustpolicy.oci.json: trust policy statement \"p\" (level strict) enforces revocation"
        ) && e.contains("set crl_dir"),
        "{e}"
    );
    let crls = tempfile::tempdir().unwrap();
    let set = crl_set(crls.path(), &[fresh(&root, &[])]);
    let c = NotationConfig::load(cfg.path(), Some(set)).unwrap();
    let s = leaf(&root, LeafSpec::default());
    let env = jws(&s, &payload_for(&target()), &Headers::default());
    c.verify(&target(), SCOPE, &env, JWS, now()).unwrap();
    // permissive only logs revocation: it loads without CRLs, and says it did not check.
    write_config(cfg.path(), &root, PERMISSIVE);
    let c = NotationConfig::load(cfg.path(), None).unwrap();
    let v = c.verify(&target(), SCOPE, &env, JWS, now()).unwrap();
    assert!(v.logged[0].1.contains("no crl_dir"), "{:?}", v.logged);
}

#[test]
fn crl_directory_errors_name_the_file() {
    let root = ca("Dir Root");
    let good = fresh(&root, &[]);
    let pem = |label: &str, der: &[u8]| {
        use base64::Engine;
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    };
    // PEM is read as well as DER.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), pem("X509 CRL", &good)).unwrap();
    CrlSet::load(dir.path()).unwrap();

    type Make<'a> = Box<dyn Fn(&Path) + 'a>;
    let cases: Vec<(&str, Make, &str)> = vec![
        ("empty", Box::new(|_: &Path| {}), "no CRL in this directory"),
        (
            "garbage",
            Box::new(|d: &Path| std::fs::write(d.join("x.crl"), b"not a crl").unwrap()),
            "x.crl: not a CRL trustgate can use",
        ),
        (
            "wrong PEM label",
            Box::new(|d: &Path| {
                std::fs::write(d.join("c.pem"), pem("CERTIFICATE", root.cert.der())).unwrap()
            }),
            "c.pem: PEM block \"CERTIFICATE\" is not an X509 CRL",
        ),
        (
            "two for one issuer",
            Box::new(|d: &Path| {
                std::fs::write(d.join("a.crl"), fresh(&root, &[])).unwrap();
                std::fs::write(d.join("b.crl"), fresh(&root, &[])).unwrap();
            }),
            "b.crl: a second CRL for issuer",
        ),
        (
            "symlink",
            Box::new(|d: &Path| {
                let target = d.join("real.crl");
                std::fs::write(d.parent().unwrap().join("real.crl"), fresh(&root, &[])).unwrap();
                std::os::unix::fs::symlink(d.parent().unwrap().join("real.crl"), &target).unwrap();
            }),
            "real.crl: not a regular file",
        ),
        (
            "subdirectory",
            Box::new(|d: &Path| std::fs::create_dir(d.join("old")).unwrap()),
            "old: not a regular file",
        ),
    ];
    for (name, make, needle) in cases {
        let parent = tempfile::tempdir().unwrap();
        let d = parent.path().join("crls");
        std::fs::create_dir(&d).unwrap();
        make(&d);
        let e = CrlSet::load(&d).unwrap_err();
        assert!(e.contains(needle), "{name}: {e}");
    }
    let e = CrlSet::load(Path::new("/nonexistent/crls")).unwrap_err();
    assert!(
        e.contains("/nonexistent/crls: CRL directory cannot be read"),
        "{e}"
    );
}

/// `crl_dir` in the policy file: relative to the policy's directory, errors at its line.
#[test]
fn crl_dir_in_the_policy_file() {
    let root = ca("Policy Root");
    let d = tempfile::tempdir().unwrap();
    write_config(&d.path().join("notation"), &root, STRICT_REVOCATION);
    std::fs::create_dir(d.path().join("crls")).unwrap();
    let load = |extra: &str| {
        trustgate::policy::Policy::from_str_in(
            &format!("[verifiers.corp]\ntype = \"notation\"\nconfig_dir = \"notation\"\n{extra}[[rules]]\nscope = \"r.io/**\"\nrequire = \"signed\"\nsigned_by = \"corp\"\n"),
            "policy.toml",
            d.path(),
        )
        .map_err(|e| e.iter().map(|e| e.to_string()).collect::<Vec<_>>())
    };
    // No crl_dir while the statement enforces revocation: the error is config_dir's.
    let e = load("").unwrap_err();
    assert!(
        e[0].starts_with("policy.toml:3: verifiers.corp.config_dir:")
            && e[0].contains("set crl_dir"),
        "{e:?}"
    );
    // An empty CRL directory is refused at crl_dir's line.
    let e = load("crl_dir = \"crls\"\n").unwrap_err();
    assert!(
        e[0].starts_with("policy.toml:4: verifiers.corp.crl_dir:")
            && e[0].contains("no CRL in this directory"),
        "{e:?}"
    );
    std::fs::write(d.path().join("crls/root.crl"), fresh(&root, &[])).unwrap();
    let p = load("crl_dir = \"crls\"\n").unwrap_or_else(|e| panic!("{e:?}"));
    let dec = p.decide("r.io", "x");
    let trustgate::policy::Requirement::Signed(s) = dec.requirement() else {
        panic!("signed")
    };
    let trustgate::policy::VerifierKind::Notation(n) = s.verifiers()[0].kind() else {
        panic!("notation")
    };
    assert_eq!(
        n.config().crls.as_ref().unwrap().dir(),
        d.path().join("crls")
    );
}
