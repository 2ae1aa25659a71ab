//! `[[upstream]] path = "corp"`: `/v2/corp/<repo>/...` routes to that upstream with repository
//! `<repo>`. podman and CRI-O refuse a port inside a repository path, so a registry with a
//! port cannot be remapped as `location = "proxy/registry.corp:5000"`; a plain alias can.
//! Against two real docker-registry instances, pulled with skopeo.
mod support;

use support::registry::{skopeo_copy, Pusher, Registry, TestProxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pulls_through_a_path_alias_from_a_registry_with_a_port() {
    let main = Registry::start();
    let corp = Registry::start();
    let img = Pusher::new(&corp)
        .image("team/app", "v1", false, 1, 4096, "amd64")
        .await;
    // Something else under the same repository name in the default upstream, so a pull
    // routed there would be seen to differ.
    let decoy = Pusher::new(&main)
        .image("corp/team/app", "v1", false, 1, 2048, "arm64")
        .await;
    assert_ne!(decoy.manifest, img.manifest);
    let config = format!(
        "default_upstream = {:?}\n[[upstream]]\nname = {:?}\nurl = {:?}\n\n[[upstream]]\nname = {:?}\nurl = {:?}\npath = \"corp\"\n",
        main.host(),
        main.host(),
        main.url,
        corp.host(),
        corp.url
    );
    assert!(
        corp.host().contains(':'),
        "the point is a registry with a port"
    );
    let proxy = TestProxy::start(&config).await;
    let ph = proxy.addr.to_string();
    for src in [
        format!("docker://{ph}/corp/team/app:v1"),
        format!("docker://{ph}/corp/team/app@{}", img.digest),
    ] {
        let dir = support::tempdir();
        let out = dir.path().join("out");
        let out2 = out.clone();
        let src2 = src.clone();
        tokio::task::spawn_blocking(move || skopeo_copy(&src2, &out2))
            .await
            .unwrap();
        assert!(
            std::fs::read(out.join("manifest.json")).unwrap() == img.manifest,
            "{src}: not the corp registry's manifest"
        );
        for b in &img.blobs {
            let hex = b.digest.trim_start_matches("sha256:");
            assert!(std::fs::read(out.join(hex)).unwrap() == b.bytes);
        }
    }
    // tags/list through the alias lists the corp repository, with Link paths keeping it.
    let body = reqwest::get(format!("http://{ph}/v2/corp/team/app/tags/list"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("\"name\":\"team/app\""), "{body}");
    proxy.shutdown().await;
}

#[test]
fn a_bad_path_alias_is_refused_naming_the_field() {
    let base = "[[upstream]]\nname = \"a.example\"\nurl = \"https://a.example\"\n\n[[upstream]]\nname = \"registry.corp:5000\"\nurl = \"https://registry.corp:5000\"\n";
    for (path, why) in [
        ("corp:5000", "one repository path component"),
        ("Corp", "one repository path component"),
        ("corp/team", "one repository path component"),
        ("a.example", "no other upstream uses"),
    ] {
        let text = format!("{base}path = {path:?}\n");
        let err = trustgate::config::Config::from_toml_str(&text, "c.toml")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("upstream[1].path"), "{path}: {err}");
        assert!(err.contains(why), "{path}: {err}");
    }
    let ok = format!("{base}path = \"corp\"\n");
    let cfg = trustgate::config::Config::from_toml_str(&ok, "c.toml").unwrap();
    assert_eq!(cfg.upstreams[1].path.as_deref(), Some("corp"));
}
