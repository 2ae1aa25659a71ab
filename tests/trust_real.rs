//! Trust verification against the REAL notary-server (local ed25519 and signer-backed ecdsa
//! server keys), with trust data published by the REAL notary CLI. Every positive result is
//! compared with what `notary lookup` / `notary list` report for the same data.
mod support;

use support::notary::{digest_of, DelegationKeyKind, Flavour, NotaryCli, NotaryServer};

fn harness_publishes_and_notary_looks_up(flavour: Flavour) {
    let server = NotaryServer::start(flavour);
    let cli = NotaryCli::new(&server);
    let gun = "example.com/app";
    cli.init(gun);
    let manifest = br#"{"schemaVersion":2}"#;
    cli.add(gun, "v1", manifest, &[]);
    cli.publish(gun);
    let line = cli.lookup(gun, "v1").unwrap();
    assert_eq!(line.digest, digest_of(manifest));
    assert_eq!(line.size, manifest.len() as u64);
    assert_eq!(cli.list_role(gun, "v1").as_deref(), Some("targets"));
    let key = cli.add_delegation(gun, "targets/releases", DelegationKeyKind::X509Cert, None);
    assert!(key.public.exists());
    cli.add(gun, "v2", b"two", &["targets/releases"]);
    cli.publish(gun);
    assert_eq!(
        cli.list_role(gun, "v2").as_deref(),
        Some("targets/releases")
    );
    let (status, body) = server.get_raw(gun, "timestamp.json");
    assert_eq!(status, 200);
    let ts: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let method = ts["signatures"][0]["method"].as_str().unwrap().to_string();
    let expected = match flavour {
        Flavour::Local => "eddsa",
        Flavour::Remote => "ecdsa",
    };
    assert_eq!(method, expected);
    assert_eq!(server.get_raw("example.com/none", "root.json").0, 404);
}

#[test]
fn harness_local_server() {
    harness_publishes_and_notary_looks_up(Flavour::Local);
}

#[test]
fn harness_remote_signer_server() {
    harness_publishes_and_notary_looks_up(Flavour::Remote);
}
