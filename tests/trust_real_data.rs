//! Real notary data that stresses the verifier's reading of it: target names and `custom`
//! data whose canonical JSON needs Notary's exact escaping (only `"` and `\` escaped; `<`, `>`,
//! `&`, control characters and non-ASCII written raw), and a repository with many targets.
//! A single wrong byte in canonicalisation fails the whole targets role, so every tag is
//! resolved and compared with `notary lookup`.
mod support;

use support::notary::{assert_same_as_notary, resolve, Flavour, NotaryCli, NotaryServer};

const ODD_NAMES: [&str; 7] = [
    "html<script>&amp;",
    "quote\"and\\backslash",
    "日本語タグ",
    "emoji-😀",
    "del\u{7f}char",
    "line\u{2028}sep",
    "slash/and.dots-_",
];

#[tokio::test]
async fn target_names_needing_notarys_escaping() {
    let gun = "example.com/odd";
    let server = NotaryServer::local();
    let cli = NotaryCli::new(&server);
    cli.init(gun);
    for (i, name) in ODD_NAMES.iter().enumerate() {
        cli.add(gun, name, format!("manifest {i}").as_bytes(), &[]);
    }
    cli.publish(gun);
    let (_, targets) = server.get_raw(gun, "targets.json");
    let text = String::from_utf8(targets).unwrap();
    // On the wire Go's encoder HTML-escapes (`\u003c`); the signature covers Notary's
    // canonical form, where `<` is raw. Only re-canonicalising the parsed value verifies.
    assert!(text.contains(r"html\u003cscript\u003e\u0026amp;"), "{text}");
    let state = support::tempdir();
    for name in ODD_NAMES {
        let got = resolve(&server, state.path(), gun, name)
            .await
            .unwrap_or_else(|e| panic!("{name:?}: {e:?}"));
        assert_same_as_notary(&cli, gun, name, &got);
    }
}

#[tokio::test]
async fn custom_target_data_is_kept_and_verified() {
    let gun = "example.com/custom";
    let server = NotaryServer::remote();
    let cli = NotaryCli::new(&server);
    cli.init(gun);
    // Keys sorted and no HTML characters: otherwise notary's own server rejects the publish
    // (the CLI signs `custom` as Go re-marshals a RawMessage). Whitespace is fine.
    let custom_text = r#"{"a": [3, 2, 1, {"b": null, "c": true}], "big": 9007199254740991, "neg": -42, "s": "日本 ☃"}"#;
    let custom: serde_json::Value = serde_json::from_str(custom_text).unwrap();
    let custom_path = cli.scratch().join("custom.json");
    std::fs::write(&custom_path, custom_text).unwrap();
    let file = cli.scratch().join("m.json");
    std::fs::write(&file, b"manifest with custom").unwrap();
    cli.run(&[
        "add",
        gun,
        "v1",
        file.to_str().unwrap(),
        "--custom",
        custom_path.to_str().unwrap(),
    ]);
    cli.publish(gun);
    let (_, targets) = server.get_raw(gun, "targets.json");
    let v: serde_json::Value = serde_json::from_slice(&targets).unwrap();
    assert_eq!(v["signed"]["targets"]["v1"]["custom"], custom);
    let state = support::tempdir();
    let got = resolve(&server, state.path(), gun, "v1").await.unwrap();
    assert_same_as_notary(&cli, gun, "v1", &got);
}

#[tokio::test]
async fn many_targets() {
    let gun = "example.com/many";
    let server = NotaryServer::start(Flavour::Local);
    let cli = NotaryCli::new(&server);
    cli.init(gun);
    let hex = "ab".repeat(32);
    for i in 0..400 {
        cli.addhash(gun, &format!("tag-{i:04}"), 1000 + i, &hex, &[]);
    }
    cli.publish(gun);
    let (_, targets) = server.get_raw(gun, "targets.json");
    assert!(targets.len() > 30_000, "{}", targets.len());
    let state = support::tempdir();
    for i in [0, 199, 399] {
        let tag = format!("tag-{i:04}");
        let got = resolve(&server, state.path(), gun, &tag).await.unwrap();
        assert_same_as_notary(&cli, gun, &tag, &got);
    }
}

/// GUNs as the proxy will name them: registry host with a port, deep paths, Docker Hub's
/// `docker.io/library/...`. The root certificate's CN is the whole GUN.
#[tokio::test]
async fn gun_shapes_the_proxy_uses() {
    let server = NotaryServer::remote();
    let cli = NotaryCli::new(&server);
    let state = support::tempdir();
    for gun in [
        "127.0.0.1:5000/team/app",
        "docker.io/library/alpine",
        "registry.example.com/a/b/c/d",
    ] {
        cli.init(gun);
        cli.add(gun, "v1", gun.as_bytes(), &[]);
        cli.publish(gun);
        let got = resolve(&server, state.path(), gun, "v1")
            .await
            .unwrap_or_else(|e| panic!("{gun}: {e:?}"));
        assert_same_as_notary(&cli, gun, "v1", &got);
    }
}
