//! Trust pinning against real data: repositories initialised by the REAL notary CLI with a
//! root certificate issued by a CA (`notary init --rootkey --rootcert`), verified with a CA
//! pin and trust on first use disabled — compared with the notary client configured with the
//! same `trust_pinning`.
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use support::notary::{assert_same_as_notary, NotaryCli, NotaryServer, PASSPHRASE};
use trustgate::trust::{
    default_roles, RefusalReason, TrustClient, TrustError, TrustPinning, TrustSettings,
};

fn openssl(args: &[&str]) {
    let out = Command::new(support::require_tool("openssl"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Ca {
    pem: PathBuf,
    key: PathBuf,
    der: Vec<u8>,
}

fn make_ca(dir: &Path, name: &str) -> Ca {
    make_ca_with(dir, name, &[])
}

/// A self-signed CA; `extra` adds `-addext` extensions (e.g. an extended key usage).
fn make_ca_with(dir: &Path, name: &str, extra: &[&str]) -> Ca {
    let key = dir.join(format!("{name}.key"));
    let pem = dir.join(format!("{name}.crt"));
    let der = dir.join(format!("{name}.der"));
    let (k, p, d) = (
        key.to_str().unwrap(),
        pem.to_str().unwrap(),
        der.to_str().unwrap(),
    );
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        k,
    ]);
    let subj = format!("/CN={name}");
    let mut args = vec![
        "req",
        "-x509",
        "-new",
        "-key",
        k,
        "-out",
        p,
        "-days",
        "365",
        "-subj",
        &subj,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ];
    for e in extra {
        args.extend(["-addext", e]);
    }
    openssl(&args);
    openssl(&["x509", "-in", p, "-outform", "DER", "-out", d]);
    Ca {
        pem,
        key,
        der: std::fs::read(&der).unwrap(),
    }
}

/// A root key (PKCS#8, encrypted as notary requires) and a leaf certificate with CN = `gun`
/// issued by `ca`; `extra` adds extension lines (e.g. an extended key usage).
fn issue_root(dir: &Path, ca: &Ca, gun: &str, extra: &str) -> (PathBuf, PathBuf) {
    let stem = gun.replace('/', "_");
    let key = dir.join(format!("{stem}.key"));
    let enc = dir.join(format!("{stem}.enc.key"));
    let csr = dir.join(format!("{stem}.csr"));
    let crt = dir.join(format!("{stem}.crt"));
    let ext = dir.join(format!("{stem}.ext"));
    std::fs::write(
        &ext,
        format!("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n{extra}"),
    )
    .unwrap();
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        &s(&key),
    ]);
    // A '/' inside a CN must be escaped in openssl's -subj syntax.
    let subj = format!("/CN={}", gun.replace('/', "\\/"));
    openssl(&[
        "req",
        "-new",
        "-key",
        &s(&key),
        "-out",
        &s(&csr),
        "-subj",
        &subj,
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(&ca.pem),
        "-CAkey",
        &s(&ca.key),
        "-CAcreateserial",
        "-out",
        &s(&crt),
        "-days",
        "365",
        "-extfile",
        &s(&ext),
    ]);
    // notary imports only encrypted root keys, and reads PBES2 with an HMAC-SHA1 PRF.
    let pass = format!("pass:{PASSPHRASE}");
    openssl(&[
        "pkcs8",
        "-topk8",
        "-v2",
        "aes-256-cbc",
        "-v2prf",
        "hmacWithSHA1",
        "-in",
        &s(&key),
        "-out",
        &s(&enc),
        "-passout",
        &pass,
    ]);
    (enc, crt)
}

fn ca_pinned_client(server: &NotaryServer, state: &Path, prefix: &str, ca: &Ca) -> TrustClient {
    let mut pinning = TrustPinning {
        disable_tofu: true,
        ..TrustPinning::default()
    };
    pinning.ca.insert(prefix.to_string(), vec![ca.der.clone()]);
    let settings = TrustSettings {
        pinning,
        state_dir: Some(state.to_path_buf()),
        ..TrustSettings::default()
    };
    TrustClient::new(settings, Arc::new(server.metadata_source())).unwrap()
}

fn notary_pinned(server: &NotaryServer, prefix: &str, ca: &Ca) -> NotaryCli {
    NotaryCli::new(server).with_trust_pinning(serde_json::json!({
        "ca": {prefix: ca.pem},
        "disable_tofu": true,
    }))
}

#[tokio::test]
async fn ca_pinning_agrees_with_notary() {
    let server = NotaryServer::local();
    let publisher = NotaryCli::new(&server);
    let dir = support::tempdir();
    let ca = make_ca(dir.path(), "publisher-ca");
    let other_ca = make_ca(dir.path(), "other-ca");

    let gun = "example.com/ca/app";
    let (key, crt) = issue_root(dir.path(), &ca, gun, "");
    publisher.init_with_root(gun, &key, &crt);
    publisher.add(gun, "v1", b"ca-rooted v1", &[]);
    publisher.publish(gun);
    // A repository with notary's usual self-signed root, under the same prefix.
    let plain = "example.com/ca/selfsigned";
    publisher.init(plain);
    publisher.add(plain, "v1", b"self-signed v1", &[]);
    publisher.publish(plain);

    let prefix = "example.com/ca/";
    // The right CA: both trust it.
    let notary = notary_pinned(&server, prefix, &ca);
    let state = support::tempdir();
    let got = ca_pinned_client(&server, state.path(), prefix, &ca)
        .resolve(gun, "v1", &default_roles())
        .await
        .unwrap();
    assert_same_as_notary(&notary, gun, "v1", &got);

    // Another CA, and a self-signed root under a CA pin: both refuse.
    let wrong = notary_pinned(&server, prefix, &other_ca);
    assert!(wrong.lookup(gun, "v1").is_err());
    let st = support::tempdir();
    let err = ca_pinned_client(&server, st.path(), prefix, &other_ca)
        .resolve(gun, "v1", &default_roles())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), RefusalReason::SignatureInvalid, "{err:?}");
    assert!(notary.lookup(plain, "v1").is_err());
    let st = support::tempdir();
    let err = ca_pinned_client(&server, st.path(), prefix, &ca)
        .resolve(plain, "v1", &default_roles())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), RefusalReason::SignatureInvalid, "{err:?}");

    // Outside the pinned prefix, with trust on first use disabled: both refuse.
    let elsewhere = "example.org/app";
    publisher.init(elsewhere);
    publisher.publish(elsewhere);
    publisher.add(elsewhere, "v1", b"elsewhere", &[]);
    publisher.publish(elsewhere);
    assert!(notary.lookup(elsewhere, "v1").is_err());
    let st = support::tempdir();
    let err = ca_pinned_client(&server, st.path(), prefix, &ca)
        .resolve(elsewhere, "v1", &default_roles())
        .await
        .unwrap_err();
    assert!(matches!(err, TrustError::TofuDisabled { .. }), "{err:?}");
}

/// Notary checks the chain with Go's `x509.Verify` defaults, which require the leaf to allow
/// server authentication when it lists extended key usages: a CA-issued root certificate
/// marked only for code signing does not satisfy a CA pin.
#[tokio::test]
async fn ca_pin_and_extended_key_usage_agree_with_notary() {
    let server = NotaryServer::local();
    let publisher = NotaryCli::new(&server);
    let dir = support::tempdir();
    let ca = make_ca(dir.path(), "publisher-ca");
    let prefix = "example.com/eku/";
    let notary = notary_pinned(&server, prefix, &ca);
    for (gun, eku) in [
        (
            "example.com/eku/serverauth",
            "extendedKeyUsage=serverAuth\n",
        ),
        (
            "example.com/eku/codesigning",
            "extendedKeyUsage=codeSigning\n",
        ),
    ] {
        let (key, crt) = issue_root(dir.path(), &ca, gun, eku);
        publisher.init_with_root(gun, &key, &crt);
        publisher.add(gun, "v1", gun.as_bytes(), &[]);
        publisher.publish(gun);
        let theirs = notary.lookup(gun, "v1");
        let st = support::tempdir();
        let ours = ca_pinned_client(&server, st.path(), prefix, &ca)
            .resolve(gun, "v1", &default_roles())
            .await;
        assert_eq!(
            theirs.is_ok(),
            ours.is_ok(),
            "{gun}: notary {theirs:?} ours {ours:?}"
        );
    }
}

/// Go's `x509.Verify` checks the extended key usage of the whole chain, the pinned CA
/// included (`checkChainForKeyUsage`); webpki ignores a trust anchor's extensions, so
/// trustgate checks the pinned CA itself. A CA restricted to code signing vouches for nothing,
/// for either client.
#[tokio::test]
async fn code_signing_ca_pin_agrees_with_notary() {
    let server = NotaryServer::local();
    let publisher = NotaryCli::new(&server);
    let dir = support::tempdir();
    // Control: the same kind of CA restricted to serverAuth is accepted by both.
    let ok_ca = make_ca_with(
        dir.path(),
        "serverauth-ca",
        &["extendedKeyUsage=serverAuth"],
    );
    let ok_gun = "example.com/saeku/app";
    let (key, crt) = issue_root(dir.path(), &ok_ca, ok_gun, "");
    publisher.init_with_root(ok_gun, &key, &crt);
    publisher.add(ok_gun, "v1", ok_gun.as_bytes(), &[]);
    publisher.publish(ok_gun);
    let notary = notary_pinned(&server, "example.com/saeku/", &ok_ca);
    let st = support::tempdir();
    let got = ca_pinned_client(&server, st.path(), "example.com/saeku/", &ok_ca)
        .resolve(ok_gun, "v1", &default_roles())
        .await
        .unwrap();
    assert_same_as_notary(&notary, ok_gun, "v1", &got);

    let ca = make_ca_with(
        dir.path(),
        "codesigning-ca",
        &["extendedKeyUsage=codeSigning"],
    );
    let prefix = "example.com/cseku/";
    let gun = "example.com/cseku/app";
    let (key, crt) = issue_root(dir.path(), &ca, gun, "");
    publisher.init_with_root(gun, &key, &crt);
    publisher.add(gun, "v1", gun.as_bytes(), &[]);
    publisher.publish(gun);
    let theirs = notary_pinned(&server, prefix, &ca).lookup(gun, "v1");
    assert!(theirs.is_err(), "notary accepted: {theirs:?}");
    let st = support::tempdir();
    let err = ca_pinned_client(&server, st.path(), prefix, &ca)
        .resolve(gun, "v1", &default_roles())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TrustError::PinMismatch { reason, .. } if reason.contains("serverAuth")),
        "{err:?}"
    );
}

/// A root key and certificate made with rcgen (openssl 3.0 cannot set notBefore), self-signed
/// or issued by `issuer`, written as notary's `init --rootkey --rootcert` wants them.
fn rcgen_root(
    dir: &Path,
    gun: &str,
    (not_before, not_after): (time::OffsetDateTime, time::OffsetDateTime),
    issuer: Option<(&rcgen::Certificate, &rcgen::KeyPair)>,
) -> (PathBuf, PathBuf) {
    let stem = gun.replace('/', "_");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, gun);
    p.distinguished_name = dn;
    p.not_before = not_before;
    p.not_after = not_after;
    let cert = match issuer {
        None => p.self_signed(&key).unwrap(),
        Some((c, k)) => p.signed_by(&key, c, k).unwrap(),
    };
    let (plain, enc, crt) = (
        dir.join(format!("{stem}.key")),
        dir.join(format!("{stem}.enc.key")),
        dir.join(format!("{stem}.crt")),
    );
    std::fs::write(&plain, key.serialize_pem()).unwrap();
    std::fs::write(&crt, cert.pem()).unwrap();
    let pass = format!("pass:{PASSPHRASE}");
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    openssl(&[
        "pkcs8",
        "-topk8",
        "-v2",
        "aes-256-cbc",
        "-v2prf",
        "hmacWithSHA1",
        "-in",
        &s(&plain),
        "-out",
        &s(&enc),
        "-passout",
        &pass,
    ]);
    (enc, crt)
}

/// A root certificate whose notBefore is two hours ahead (the publisher's clock runs ahead):
/// Notary's `ValidateCertificate` gives a day of leeway, so under trust on first use both
/// clients accept it; under a CA pin Go's `x509.Verify` checks the leaf at the current time
/// without leeway, and both refuse.
#[tokio::test]
async fn root_cert_not_before_leeway_agrees_with_notary() {
    let server = NotaryServer::local();
    let publisher = NotaryCli::new(&server);
    let dir = support::tempdir();
    let ahead = time::OffsetDateTime::now_utc() + time::Duration::hours(2);
    let ahead = (ahead, ahead + time::Duration::days(365));

    let gun = "example.com/skew/tofu";
    let (key, crt) = rcgen_root(dir.path(), gun, ahead, None);
    publisher.init_with_root(gun, &key, &crt);
    publisher.add(gun, "v1", gun.as_bytes(), &[]);
    publisher.publish(gun);
    let notary = NotaryCli::new(&server);
    let st = support::tempdir();
    let got = support::notary::trust_client(&server, st.path())
        .resolve(gun, "v1", &default_roles())
        .await
        .unwrap();
    assert_same_as_notary(&notary, gun, "v1", &got);

    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "skew-ca");
    p.distinguished_name = dn;
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = p.self_signed(&ca_key).unwrap();
    let ca = Ca {
        pem: dir.path().join("skew-ca.crt"),
        key: dir.path().join("skew-ca.key"),
        der: ca_cert.der().to_vec(),
    };
    std::fs::write(&ca.pem, ca_cert.pem()).unwrap();
    let gun = "example.com/skew/ca/app";
    let (key, crt) = rcgen_root(dir.path(), gun, ahead, Some((&ca_cert, &ca_key)));
    publisher.init_with_root(gun, &key, &crt);
    publisher.add(gun, "v1", gun.as_bytes(), &[]);
    publisher.publish(gun);
    let prefix = "example.com/skew/ca/";
    let theirs = notary_pinned(&server, prefix, &ca).lookup(gun, "v1");
    assert!(theirs.is_err(), "notary accepted: {theirs:?}");
    let st = support::tempdir();
    let err = ca_pinned_client(&server, st.path(), prefix, &ca)
        .resolve(gun, "v1", &default_roles())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TrustError::PinMismatch { reason, .. } if reason.contains("CertNotValidYet")),
        "{err:?}"
    );
}

/// A cached root whose certificate has expired since: Notary's `bootstrapClient` fails hard
/// (the cached root no longer validates), even though the publisher rotated to a new root
/// key before the old certificate expired and a fresh client accepts that new root. trustgate
/// with the same cached root refuses the same way, naming the certificate.
#[tokio::test]
async fn expired_certificate_of_the_cached_root_agrees_with_notary() {
    let server = NotaryServer::local();
    let publisher = NotaryCli::new(&server);
    let dir = support::tempdir();
    let now = time::OffsetDateTime::now_utc();
    let not_after = now + time::Duration::seconds(15);
    let gun = "example.com/shortlived/app";
    let (key, crt) = rcgen_root(
        dir.path(),
        gun,
        (now - time::Duration::minutes(1), not_after),
        None,
    );
    publisher.init_with_root(gun, &key, &crt);
    publisher.add(gun, "v1", gun.as_bytes(), &[]);
    publisher.publish(gun);
    // Both clients trust the short-lived root now.
    let cached = NotaryCli::new(&server);
    let state = support::tempdir();
    let got = support::notary::trust_client(&server, state.path())
        .resolve(gun, "v1", &default_roles())
        .await
        .unwrap();
    assert_same_as_notary(&cached, gun, "v1", &got);
    // The publisher rotates to a new root key (notary mints a 10-year certificate for it).
    publisher.rotate_root(gun);
    publisher.publish(gun);
    let wait = not_after - time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    assert!(
        wait.is_positive(),
        "setup took longer than the certificate lives"
    );
    std::thread::sleep(wait.unsigned_abs());

    let theirs = cached.lookup(gun, "v1");
    assert!(
        theirs.is_err(),
        "notary with the cached root accepted: {theirs:?}"
    );
    // certs.go:105: the cached root's leaf certificates are no longer valid.
    let why = theirs.unwrap_err();
    assert!(
        why.contains("unable to retrieve valid leaf certificates"),
        "{why}"
    );
    let err = support::notary::trust_client(&server, state.path())
        .resolve(gun, "v1", &default_roles())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TrustError::RootCertExpired { cn, .. } if cn == gun),
        "{err:?}"
    );
    // A fresh client of either kind accepts the rotated root.
    let fresh = NotaryCli::new(&server);
    let st = support::tempdir();
    let got = support::notary::trust_client(&server, st.path())
        .resolve(gun, "v1", &default_roles())
        .await
        .unwrap();
    assert_same_as_notary(&fresh, gun, "v1", &got);
}
