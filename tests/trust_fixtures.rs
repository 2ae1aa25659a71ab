//! The verification core against metadata the real notary CLI and notary-server produced
//! (tests/fixtures/notary, see its README): canonical JSON reproduces the signed bytes exactly,
//! every signature method and key type Notary wrote verifies, and lookups equal what
//! `notary lookup` / `notary list` reported when the fixtures were made.

mod trustfix;

use std::path::Path;
use std::sync::Arc;

use time::macros::datetime;
use time::OffsetDateTime;
use trustfix::MemSource;
use trustgate::trust::wire::Envelope;
use trustgate::trust::{canonical, default_roles, TrustClient, TrustError, TrustSettings};

const NOW: OffsetDateTime = datetime!(2026-11-24 00:00:00 UTC);

fn fixture_dir(server: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/notary")
        .join(server)
}

fn read(server: &str, file: &str) -> Vec<u8> {
    std::fs::read(fixture_dir(server).join(file)).unwrap()
}

/// Serves a fixture directory like notary-server: current names, by-hash and by-version.
fn serve(server: &str, roles: &[&str], root_file: &str) -> Arc<MemSource> {
    let src = MemSource::new();
    for role in roles {
        src.put_role(role, &read(server, &format!("{role}.json")));
    }
    src.put_role("root", &read(server, root_file));
    src.put("timestamp.json", &read(server, "timestamp.json"));
    for v in 1..=3 {
        let f = format!("{v}.root.json");
        if fixture_dir(server).join(&f).exists() {
            src.put(&f, &read(server, &f));
        }
    }
    src
}

fn client(src: &Arc<MemSource>, dir: &Path) -> TrustClient {
    let s = TrustSettings {
        state_dir: Some(dir.to_path_buf()),
        ..Default::default()
    };
    TrustClient::new(s, src.clone())
        .unwrap()
        .with_clock(Arc::new(|| NOW))
}

const ED_ROLES: &[&str] = &["targets", "snapshot", "targets/releases", "targets/ci"];

#[test]
fn canonical_json_reproduces_the_signed_bytes_verbatim() {
    for (server, files) in [
        (
            "ed25519-server",
            &[
                "root.json",
                "1.root.json",
                "2.root.json",
                "targets.json",
                "snapshot.json",
                "timestamp.json",
                "targets/releases.json",
                "targets/ci.json",
            ][..],
        ),
        (
            "ecdsa-server",
            &[
                "root.json",
                "targets.json",
                "snapshot.json",
                "timestamp.json",
            ][..],
        ),
    ] {
        for file in files {
            let bytes = read(server, file);
            let env = Envelope::parse("x", &bytes).unwrap();
            let canon = canonical::encode(&env.signed).unwrap();
            let text = String::from_utf8(bytes.clone()).unwrap();
            let expected = format!("{{\"signed\":{}", String::from_utf8(canon).unwrap());
            assert!(
                text.starts_with(&expected),
                "{server}/{file}: canonical form differs"
            );
        }
    }
}

#[tokio::test]
async fn ed25519_server_lookups_equal_notary() {
    let dir = tempfile::tempdir().unwrap();
    let src = serve("ed25519-server", ED_ROLES, "root.json");
    let c = client(&src, dir.path());

    let v2 = c
        .resolve("example.com/app", "v2", &default_roles())
        .await
        .unwrap();
    assert_eq!(
        v2.digest(),
        "sha256:877730ba5fd0839581c610bb09134f29ccec77201813e686dfe2c5bccfce33af"
    );
    assert_eq!(v2.length(), 4);
    assert_eq!(v2.role(), "targets/releases");
    assert_eq!(
        v2.keyids(),
        ["85ccb28b24bb94bb31faffea4237da25dd549ec7d42c92b003a179544a707c50"]
    );

    // Revoked (removed and published): no longer signed anywhere.
    let err = c
        .resolve("example.com/app", "v1", &default_roles())
        .await
        .unwrap_err();
    assert!(matches!(err, TrustError::TagNotSigned { .. }), "{err:?}");
    // Signed only by targets/ci: Docker does not trust it by default...
    let err = c
        .resolve("example.com/app", "ci-1", &default_roles())
        .await
        .unwrap_err();
    assert!(
        matches!(err, TrustError::SignedOnlyByOtherRole { .. }),
        "{err:?}"
    );
    // ...but it verifies when targets/ci is accepted.
    let ci = c
        .resolve("example.com/app", "ci-1", &["targets/ci".to_string()])
        .await
        .unwrap();
    assert_eq!(
        ci.digest(),
        "sha256:e18cfafbb0c8b7909e7517cceecdddc4dec7b2d3483fd2813015eba3531a56ed"
    );
    assert_eq!(ci.length(), 3);

    // `notary list`, restricted to the roles Docker accepts.
    let all: Vec<String> = ["targets/releases", "targets/ci", "targets"]
        .map(String::from)
        .to_vec();
    let listed = c.list("example.com/app", &all).await.unwrap();
    let got: Vec<(&str, &str)> = listed.iter().map(|t| (t.tag(), t.role())).collect();
    assert_eq!(got, [("ci-1", "targets/ci"), ("v2", "targets/releases")]);
}

#[tokio::test]
async fn real_root_rotation_is_walked_from_the_first_root() {
    let dir = tempfile::tempdir().unwrap();
    // First contact sees root v1 (TOFU) — then the server moves to v3: 2.root.json (snapshot
    // key handed to the server) and 3.root.json (new root key, signed by old and new).
    let src = serve("ed25519-server", ED_ROLES, "1.root.json");
    let c = client(&src, dir.path());
    // With root v1 the current timestamp/snapshot keys are not v1's: refused, root kept.
    let err = c.update("example.com/app").await.unwrap_err();
    assert!(matches!(err, TrustError::ThresholdNotMet { .. }), "{err:?}");
    src.put_role("root", &read("ed25519-server", "root.json"));
    let state = c.update("example.com/app").await.unwrap();
    assert_eq!(state.root_version(), 3);
    assert!(src.fetched("2.root.json"), "intermediate root walked");
}

#[tokio::test]
async fn ecdsa_server_sha256_only_target() {
    let dir = tempfile::tempdir().unwrap();
    let src = serve("ecdsa-server", &["targets", "snapshot"], "root.json");
    let c = client(&src, dir.path());
    let v1 = c
        .resolve("example.com/e", "v1", &default_roles())
        .await
        .unwrap();
    assert_eq!(v1.digest(), format!("sha256:{}", "a".repeat(64)));
    assert_eq!(v1.length(), 1234);
    assert_eq!(v1.role(), "targets");
}

#[tokio::test]
async fn a_flipped_byte_in_real_metadata_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = serve("ed25519-server", ED_ROLES, "root.json");
    // Change one digit of the signed timestamp version, keeping the signature.
    let ts = String::from_utf8(read("ed25519-server", "timestamp.json")).unwrap();
    src.put(
        "timestamp.json",
        ts.replacen("\"version\":6", "\"version\":7", 1).as_bytes(),
    );
    let err = client(&src, dir.path())
        .update("example.com/app")
        .await
        .unwrap_err();
    assert!(
        matches!(err, TrustError::ThresholdNotMet { valid: 0, .. }),
        "{err:?}"
    );
}

/// Real notary output for names that need Notary's escaping: on the wire Go wrote
/// `\u003c`-style escapes, the signature covers `<`, `>`, `&`, U+2028 and DEL raw.
#[tokio::test]
async fn escaping_fixture_verifies_every_name() {
    let dir = tempfile::tempdir().unwrap();
    let src = serve("escaping", &["targets", "snapshot"], "root.json");
    let wire = String::from_utf8(read("escaping", "targets.json")).unwrap();
    assert!(wire.contains("\\u003c"), "the file escapes `<` on the wire");
    let env = Envelope::parse("targets", wire.as_bytes()).unwrap();
    let canon = String::from_utf8(canonical::encode(&env.signed).unwrap()).unwrap();
    assert!(
        canon.contains("html<script>&amp;"),
        "canonical form writes them raw"
    );
    assert!(
        !wire.contains(&canon),
        "so the signed bytes are not the wire bytes here"
    );
    let c = client(&src, dir.path());
    for name in [
        "html<script>&amp;",
        "quote\"and\\backslash",
        "日本語タグ",
        "emoji-😀",
        "del\u{7f}char",
        "line\u{2028}sep",
    ] {
        let t = c
            .resolve("example.com/odd", name, &default_roles())
            .await
            .unwrap();
        assert_eq!(
            t.digest(),
            "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
            "{name:?}"
        );
        assert_eq!(t.length(), 6);
    }
}

/// After the last delegation is removed notary writes `"roles":null`.
#[tokio::test]
async fn roles_null_fixture_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let src = serve("roles-null", &["targets", "snapshot"], "root.json");
    let t = client(&src, dir.path())
        .resolve("example.com/dr", "shared", &default_roles())
        .await
        .unwrap();
    assert_eq!(t.role(), "targets");
    assert_eq!(t.length(), 6);
}
