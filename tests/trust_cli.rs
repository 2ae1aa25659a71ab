//! `trustgate trust lookup|list` (library side) against the real notary-server: output
//! matches `notary lookup` / `notary list`, refusals carry their precise reason and exit 1,
//! and `--root-cert` pins the repository's root.
mod support;

use base64::Engine;
use clap::Parser;
use support::notary::{DelegationKeyKind, Flavour, NotaryCli, NotaryServer};
use trustgate::trust::cli::{self, CliError, TrustArgs, TrustCommand};
use trustgate::trust::RefusalReason;

#[derive(Parser)]
struct Top {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    Trust(TrustArgs),
}

/// Parses `trustgate trust ...` exactly as main.rs will.
fn parse(args: &[&str]) -> TrustArgs {
    let argv = ["trustgate", "trust"].iter().chain(args.iter());
    match Top::try_parse_from(argv).unwrap().cmd {
        Cmd::Trust(t) => t,
    }
}

fn common<'a>(server: &'a NotaryServer, state: &'a str, ca: &'a str) -> Vec<&'a str> {
    vec![
        "--server",
        server.url.as_str(),
        "--ca",
        ca,
        "--state-dir",
        state,
    ]
}

async fn run(args: &[&str]) -> Result<String, CliError> {
    cli::run(&parse(args)).await
}

fn published(flavour: Flavour, gun: &str) -> (NotaryServer, NotaryCli) {
    let server = NotaryServer::start(flavour);
    let cli = NotaryCli::new(&server);
    cli.init(gun);
    cli.add(gun, "v1", b"manifest v1", &[]);
    cli.publish(gun);
    cli.add_delegation(gun, "targets/releases", DelegationKeyKind::X509Cert, None);
    cli.add(gun, "v2", b"manifest v2", &["targets/releases"]);
    cli.publish(gun);
    cli.add_delegation(gun, "targets/ci", DelegationKeyKind::PublicKey, None);
    cli.add(gun, "ci-1", b"ci build", &["targets/ci"]);
    cli.publish(gun);
    (server, cli)
}

/// The root certificate (PEM) of `gun`'s current root.json, as the server serves it.
fn root_cert_pem(server: &NotaryServer, gun: &str) -> Vec<u8> {
    let (status, body) = server.get_raw(gun, "root.json");
    assert_eq!(status, 200);
    let root: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let keyid = root["signed"]["roles"]["root"]["keyids"][0]
        .as_str()
        .unwrap();
    let b64 = root["signed"]["keys"][keyid]["keyval"]["public"]
        .as_str()
        .unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[test]
fn args_parse_as_a_subcommand() {
    let t = parse(&[
        "lookup",
        "docker.io/library/alpine",
        "3.20",
        "--server",
        "https://notary.docker.io",
        "--role",
        "targets/releases",
    ]);
    match t.command {
        TrustCommand::Lookup(l) => {
            assert_eq!(l.gun, "docker.io/library/alpine");
            assert_eq!(l.tag, "3.20");
            assert_eq!(l.server.roles, vec!["targets/releases".to_string()]);
            assert!(l.server.ca.is_none() && l.server.root_cert.is_none());
        }
        TrustCommand::List(_) | TrustCommand::Status(_) => panic!("parsed as list or status"),
    }
    assert!(Top::try_parse_from(["trustgate", "trust", "lookup", "gun", "tag"]).is_err());
}

#[tokio::test]
async fn lookup_prints_what_notary_lookup_prints_plus_the_role() {
    let gun = "example.com/cli";
    let (server, notary) = published(Flavour::Remote, gun);
    let state = support::tempdir();
    let (st, ca) = (
        state.path().to_str().unwrap(),
        server.ca_path.to_str().unwrap(),
    );
    for (tag, role) in [("v1", "targets"), ("v2", "targets/releases")] {
        let mut args = vec!["lookup", gun, tag];
        args.extend(common(&server, st, ca));
        let out = run(&args).await.unwrap();
        let n = notary.lookup(gun, tag).unwrap();
        assert_eq!(out, format!("{} {} {} {role}\n", n.tag, n.digest, n.size));
    }
}

#[tokio::test]
async fn list_shows_the_accepted_roles_as_notary_list_does() {
    let gun = "example.com/clilist";
    let (server, notary) = published(Flavour::Local, gun);
    let state = support::tempdir();
    let (st, ca) = (
        state.path().to_str().unwrap(),
        server.ca_path.to_str().unwrap(),
    );
    let mut args = vec!["list", gun];
    args.extend(common(&server, st, ca));
    let out = run(&args).await.unwrap();
    let want: String = notary
        .list(gun)
        .into_iter()
        .filter(|r| r.role == "targets" || r.role == "targets/releases")
        .map(|r| format!("{} {} {} {}\n", r.name, r.digest, r.size, r.role))
        .collect();
    assert_eq!(out, want);
    assert!(
        !out.contains("ci-1"),
        "targets/ci is not an accepted role by default"
    );
    args.extend(["--role", "targets/ci"]);
    let out = run(&args).await.unwrap();
    assert!(
        out.starts_with("ci-1 ") && out.ends_with(" targets/ci\n"),
        "{out}"
    );
}

#[tokio::test]
async fn refusals_name_their_reason_and_exit_1() {
    let gun = "example.com/clirefuse";
    let (server, _notary) = published(Flavour::Local, gun);
    let state = support::tempdir();
    let (st, ca) = (
        state.path().to_str().unwrap(),
        server.ca_path.to_str().unwrap(),
    );
    let cases = [
        (gun, "unsigned", RefusalReason::TagNotSigned),
        (gun, "ci-1", RefusalReason::SignedByUnacceptedRole),
        ("example.com/nothing", "v1", RefusalReason::NoTrustData),
    ];
    for (g, tag, want) in cases {
        let mut args = vec!["lookup", g, tag];
        args.extend(common(&server, st, ca));
        match run(&args).await {
            Err(e @ CliError::Refused { .. }) => {
                let CliError::Refused { reason, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(*reason, want, "{e}");
                assert_eq!(e.exit_code(), 1);
                assert!(e.to_string().contains(tag), "{e}");
            }
            other => panic!("{g}:{tag}: {other:?}"),
        }
    }
    let mut args = vec!["list", "example.com/nothing"];
    args.extend(common(&server, st, ca));
    match run(&args).await {
        Err(
            e @ CliError::Refused {
                reason: RefusalReason::NoTrustData,
                ..
            },
        ) => {
            assert_eq!(e.exit_code(), 1)
        }
        other => panic!("list: {other:?}"),
    }
}

#[tokio::test]
async fn server_down_fails_closed_with_exit_1() {
    let gun = "example.com/clidown";
    let (mut server, _notary) = published(Flavour::Local, gun);
    server.stop();
    let state = support::tempdir();
    let (st, ca) = (
        state.path().to_str().unwrap(),
        server.ca_path.to_str().unwrap(),
    );
    let mut args = vec!["lookup", gun, "v1"];
    args.extend(common(&server, st, ca));
    match run(&args).await {
        Err(
            e @ CliError::Refused {
                reason: RefusalReason::Unreachable,
                ..
            },
        ) => {
            assert_eq!(e.exit_code(), 1)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn root_cert_pins_the_repository_root() {
    let gun = "example.com/clipin";
    let other = "example.com/other";
    let (server, notary) = published(Flavour::Local, gun);
    notary.init(other);
    notary.publish(other);
    let dir = support::tempdir();
    let good = dir.path().join("good.pem");
    let wrong = dir.path().join("wrong.pem");
    std::fs::write(&good, root_cert_pem(&server, gun)).unwrap();
    std::fs::write(&wrong, root_cert_pem(&server, other)).unwrap();
    let ca = server.ca_path.to_str().unwrap();

    let state = support::tempdir();
    let st = state.path().to_str().unwrap();
    let mut args = vec!["lookup", gun, "v1", "--root-cert", good.to_str().unwrap()];
    args.extend(common(&server, st, ca));
    let out = run(&args).await.unwrap();
    assert!(out.starts_with("v1 sha256:"), "{out}");

    // A fresh state dir, pinned to another repository's root certificate: no TOFU fallback.
    let state = support::tempdir();
    let st = state.path().to_str().unwrap();
    let mut args = vec!["lookup", gun, "v1", "--root-cert", wrong.to_str().unwrap()];
    args.extend(common(&server, st, ca));
    match run(&args).await {
        Err(
            e @ CliError::Refused {
                reason: RefusalReason::SignatureInvalid,
                ..
            },
        ) => {
            assert_eq!(e.exit_code(), 1)
        }
        other => panic!("{other:?}"),
    }
    // Not a certificate at all: a setup error, exit 2.
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, b"not a pem").unwrap();
    let mut args = vec!["lookup", gun, "v1", "--root-cert", bad.to_str().unwrap()];
    args.extend(common(&server, st, ca));
    let e = run(&args).await.unwrap_err();
    assert!(matches!(e, CliError::RootCert { .. }), "{e:?}");
    assert_eq!(e.exit_code(), 2);
}

/// Root keyid of `gun`'s current root.json (what Notary's `trust_pinning.certs` lists).
fn root_keyid(server: &NotaryServer, gun: &str) -> String {
    let (_, body) = server.get_raw(gun, "root.json");
    let root: serde_json::Value = serde_json::from_slice(&body).unwrap();
    root["signed"]["roles"]["root"]["keyids"][0]
        .as_str()
        .unwrap()
        .to_string()
}

/// The setting of both tests below: `gun` published, the old root certificate written to
/// `old.pem`, a notary client (with the same pin in `trust_pinning.certs`) and a trustgate
/// state dir that both trusted the repository before the publisher rotated the root key.
struct PinnedRotation {
    server: NotaryServer,
    old_pem: std::path::PathBuf,
    pin: serde_json::Value,
    cached_notary: NotaryCli,
    cached_state: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

const PIN_GUN: &str = "example.com/pinrot";

async fn pinned_rotation() -> PinnedRotation {
    let gun = PIN_GUN;
    let server = NotaryServer::local();
    let publisher = NotaryCli::new(&server);
    publisher.init(gun);
    publisher.add(gun, "v1", b"v1", &[]);
    publisher.publish(gun);
    let dir = support::tempdir();
    let old_pem = dir.path().join("old.pem");
    std::fs::write(&old_pem, root_cert_pem(&server, gun)).unwrap();
    let pin = serde_json::json!({"certs": {gun: [root_keyid(&server, gun)]}});
    let cached_notary = NotaryCli::new(&server).with_trust_pinning(pin.clone());
    cached_notary.lookup(gun, "v1").unwrap();
    let cached_state = support::tempdir();
    pinned_lookup(&server, &old_pem, cached_state.path(), "v1")
        .await
        .unwrap();
    publisher.rotate_root(gun);
    publisher.add(gun, "v2", b"v2", &[]);
    publisher.publish(gun);
    PinnedRotation {
        server,
        old_pem,
        pin,
        cached_notary,
        cached_state,
        _dir: dir,
    }
}

async fn pinned_lookup(
    server: &NotaryServer,
    pem: &std::path::Path,
    state: &std::path::Path,
    tag: &str,
) -> Result<String, CliError> {
    let (st, ca) = (state.to_str().unwrap(), server.ca_path.to_str().unwrap());
    let mut args = vec!["lookup", PIN_GUN, tag, "--root-cert", pem.to_str().unwrap()];
    args.extend(common(server, st, ca));
    run(&args).await
}

/// Meeting the repository for the first time after the rotation, a pin to the old root
/// certificate matches nothing: notary refuses ("unable to match any certificates to
/// trust_pinning config") and so do we.
#[tokio::test]
async fn root_cert_pin_after_rotation_refuses_a_fresh_client_like_notary() {
    let p = pinned_rotation().await;
    let fresh_notary = NotaryCli::new(&p.server).with_trust_pinning(p.pin.clone());
    let notary = fresh_notary.lookup(PIN_GUN, "v2").unwrap_err();
    assert!(notary.contains("trust_pinning"), "{notary}");
    let fresh = support::tempdir();
    match pinned_lookup(&p.server, &p.old_pem, fresh.path(), "v2").await {
        Err(CliError::Refused {
            reason: RefusalReason::SignatureInvalid,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

/// A client that already trusts the repository: notary's cached root is itself the pin
/// (`bootstrapClient` loads it with an empty trust-pinning config), so it follows a rotation
/// signed by the old root and answers v2. trustgate does the same: configured pins apply to
/// later roots only when the cached root has expired (tufclient.go:372-378).
#[tokio::test]
async fn root_cert_pin_with_cached_root_follows_rotation_like_notary() {
    let p = pinned_rotation().await;
    let notary = p.cached_notary.lookup(PIN_GUN, "v2").unwrap();
    let ours = pinned_lookup(&p.server, &p.old_pem, p.cached_state.path(), "v2")
        .await
        .unwrap();
    assert_eq!(
        ours,
        format!("v2 {} {} targets\n", notary.digest, notary.size)
    );
}
