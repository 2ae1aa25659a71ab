//! trustgate in front of the real docker-registry, pulled through with skopeo (a real client)
//! and with reqwest: byte-identical manifests and blobs by tag and by digest, HEAD/GET
//! agreement, Range, refusal of writes, tags/list pagination, upstream errors.
mod support;

use support::registry::{proxy_config, skopeo_copy, Images, Pushed, Pusher, Registry, TestProxy};

async fn setup() -> (Registry, Images, TestProxy) {
    let reg = Registry::start();
    let images = Pusher::new(&reg).standard_images().await;
    let proxy = TestProxy::start(&proxy_config(&[(&reg.host(), &reg.url)], "")).await;
    (reg, images, proxy)
}

fn host(p: &TestProxy) -> String {
    p.addr.to_string()
}

/// Checks a skopeo `dir:` copy of `img`: manifest bytes and every blob byte-identical.
fn assert_dir_matches(out: &std::path::Path, img: &Pushed) {
    let got = std::fs::read(out.join("manifest.json")).unwrap();
    assert_eq!(
        got, img.manifest,
        "manifest of {}:{} differs",
        img.repo, img.tag
    );
    for b in &img.blobs {
        let hex = b.digest.trim_start_matches("sha256:");
        let got = std::fs::read(out.join(hex))
            .unwrap_or_else(|_| panic!("blob {} of {} missing", b.digest, img.repo));
        assert!(got == b.bytes, "blob {} of {} differs", b.digest, img.repo);
    }
    for c in &img.children {
        let hex = c.digest.trim_start_matches("sha256:");
        let got = std::fs::read(out.join(format!("{hex}.manifest.json"))).unwrap();
        assert_eq!(got, c.manifest, "child manifest {}", c.digest);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pulls_every_image_kind_by_tag_and_digest_byte_identical() {
    let (_reg, images, proxy) = setup().await;
    let ph = host(&proxy);
    for img in [
        &images.docker,
        &images.oci,
        &images.big,
        &images.oci_index,
        &images.docker_list,
    ] {
        let is_index = !img.children.is_empty();
        for src in [
            format!("docker://{ph}/{}:{}", img.repo, img.tag),
            format!("docker://{ph}/{}@{}", img.repo, img.digest),
        ] {
            let dir = support::tempdir();
            let out = dir.path().join("out");
            let src2 = src.clone();
            let out2 = out.clone();
            tokio::task::spawn_blocking(move || {
                if is_index {
                    skopeo_copy_all(&src2, &out2)
                } else {
                    skopeo_copy(&src2, &out2)
                }
            })
            .await
            .unwrap();
            assert_dir_matches(&out, img);
        }
    }
    proxy.shutdown().await;
}

fn skopeo_copy_all(src: &str, out: &std::path::Path) {
    let o = std::process::Command::new(support::require_tool("skopeo"))
        .args(["copy", "--all", "--src-tls-verify=false", "--retry-times=0"])
        .arg(src)
        .arg(format!("dir:{}", out.display()))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "skopeo copy --all {src}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_get_agree_and_digest_header_is_exact() {
    let (_reg, images, proxy) = setup().await;
    let http = reqwest::Client::new();
    for img in [
        &images.docker,
        &images.oci,
        &images.oci_index,
        &images.docker_list,
    ] {
        for reference in [img.tag.clone(), img.digest.clone()] {
            let url = format!("{}/v2/{}/manifests/{reference}", proxy.url, img.repo);
            // No Accept at all: the proxy must ask for the modern types itself.
            let get = http.get(&url).send().await.unwrap();
            assert_eq!(get.status(), 200, "{url}");
            let gh = get.headers().clone();
            let body = get.bytes().await.unwrap();
            assert_eq!(body.as_ref(), img.manifest.as_slice(), "{url}");
            assert_eq!(gh["docker-content-digest"], img.digest.as_str());
            assert_eq!(gh["content-type"], img.media_type);
            assert_eq!(gh["docker-distribution-api-version"], "registry/2.0");
            let head = http.head(&url).send().await.unwrap();
            assert_eq!(head.status(), 200);
            for h in ["docker-content-digest", "content-type", "content-length"] {
                assert_eq!(head.headers().get(h), gh.get(h), "{h} for HEAD {url}");
            }
            assert_eq!(
                gh["content-length"],
                img.manifest.len().to_string().as_str()
            );
        }
    }
    // Blobs too.
    let b = &images.big.blobs[1];
    let url = format!("{}/v2/{}/blobs/{}", proxy.url, images.big.repo, b.digest);
    let head = http.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        b.bytes.len().to_string().as_str()
    );
    assert_eq!(head.headers()["docker-content-digest"], b.digest.as_str());
    let get = http.get(&url).send().await.unwrap();
    assert_eq!(
        get.headers()["content-length"],
        head.headers()["content-length"]
    );
    assert!(get.bytes().await.unwrap().as_ref() == b.bytes.as_slice());
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_requests_get_206_or_416() {
    let (_reg, images, proxy) = setup().await;
    let http = reqwest::Client::new();
    let b = &images.big.blobs[1];
    let url = format!("{}/v2/{}/blobs/{}", proxy.url, images.big.repo, b.digest);
    let r = http
        .get(&url)
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 1000-1999/{}", b.bytes.len()).as_str()
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &b.bytes[1000..2000]);
    // A resumed download: from an offset to the end.
    let from = b.bytes.len() - 10;
    let r = http
        .get(&url)
        .header("range", format!("bytes={from}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &b.bytes[from..]);
    let r = http
        .get(&url)
        .header("range", format!("bytes={}-", b.bytes.len() + 10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    proxy.shutdown().await;
}

async fn error_code(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    (
        status,
        v["errors"][0]["code"].as_str().unwrap().to_string(),
        v["errors"][0]["message"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_refused_with_405_unsupported() {
    let (reg, images, proxy) = setup().await;
    let http = reqwest::Client::new();
    let repo = &images.docker.repo;
    let reqs = [
        http.post(format!("{}/v2/{repo}/blobs/uploads/", proxy.url)),
        http.put(format!("{}/v2/{repo}/manifests/evil", proxy.url))
            .header("content-type", support::registry::DOCKER_MANIFEST)
            .body(images.docker.manifest.clone()),
        http.patch(format!("{}/v2/{repo}/blobs/uploads/abc", proxy.url)),
        http.delete(format!(
            "{}/v2/{repo}/manifests/{}",
            proxy.url, images.docker.digest
        )),
    ];
    for rb in reqs {
        let (status, code, _) = error_code(rb.send().await.unwrap()).await;
        assert_eq!((status, code.as_str()), (405, "UNSUPPORTED"));
    }
    // Nothing reached the registry: the tag "evil" does not exist there.
    let r = http
        .get(format!("{}/v2/{repo}/manifests/evil", reg.url))
        .header("accept", support::registry::DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_base_invalid_names_and_upstream_404s() {
    let (_reg, images, proxy) = setup().await;
    let http = reqwest::Client::new();
    let r = http.get(format!("{}/v2/", proxy.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    let r = http
        .get(format!("{}/healthz", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (s, c, _) = error_code(
        http.get(format!("{}/v2/Bad/manifests/v1", proxy.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, c.as_str()), (400, "NAME_INVALID"));
    let (s, c, _) = error_code(
        http.get(format!("{}/v2/a/manifests/-v1", proxy.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, c.as_str()), (400, "TAG_INVALID"));
    let (s, c, _) = error_code(
        http.get(format!("{}/v2/a/blobs/sha256:1234", proxy.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, c.as_str()), (400, "DIGEST_INVALID"));
    let (s, _, _) = error_code(
        http.get(format!("{}/v2/a/%2e%2e/manifests/v1", proxy.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 404);

    let (s, c, m) = error_code(
        http.get(format!(
            "{}/v2/{}/manifests/nope",
            proxy.url, images.docker.repo
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!((s, c.as_str()), (404, "MANIFEST_UNKNOWN"));
    assert!(
        m.contains(&images.docker.repo) && m.contains("127.0.0.1"),
        "{m}"
    );
    // docker-registry 2.8 refuses to down-convert to schema1 with 400 MANIFEST_INVALID; the
    // upstream's status and code reach the client, with the upstream named.
    let (s, c, m) = error_code(
        http.get(format!(
            "{}/v2/{}/manifests/{}",
            proxy.url, images.docker.repo, images.docker.tag
        ))
        .header(
            "accept",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!((s, c.as_str()), (400, "MANIFEST_INVALID"));
    assert!(m.contains("127.0.0.1"), "{m}");
    let missing = support::registry::sha256(b"missing");
    let (s, c, _) = error_code(
        http.get(format!(
            "{}/v2/{}/blobs/{missing}",
            proxy.url, images.docker.repo
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!((s, c.as_str()), (404, "BLOB_UNKNOWN"));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_list_through_a_path_prefix() {
    let reg = Registry::start();
    let pusher = Pusher::new(&reg);
    let img = pusher.image("test/tags", "a", false, 5, 100, "amd64").await;
    for t in ["b", "c"] {
        pusher
            .manifest("test/tags", t, img.media_type, &img.manifest)
            .await;
    }
    // docker-registry 2.8 does not paginate tags (it ignores `n`), so the `Link` rewrite is
    // tested against a scripted upstream in proxy_fake_upstream.rs.
    let proxy = TestProxy::start(&proxy_config(&[("reg.test", &reg.url)], "")).await;
    let r = reqwest::get(format!("{}/v2/reg.test/test/tags/tags/list", proxy.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["name"], "test/tags");
    let mut tags: Vec<_> = v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, ["a", "b", "c"]);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ns_and_path_prefix_reach_two_different_upstreams() {
    let reg_a = Registry::start();
    let reg_b = Registry::start();
    // Same repository and tag in both, different content.
    let a = Pusher::new(&reg_a)
        .image("shared/app", "v1", false, 100, 2048, "amd64")
        .await;
    let b = Pusher::new(&reg_b)
        .image("shared/app", "v1", true, 200, 2048, "amd64")
        .await;
    assert_ne!(a.digest, b.digest);
    let proxy = TestProxy::start(&proxy_config(
        &[("rega.test", &reg_a.url), ("regb.test", &reg_b.url)],
        "",
    ))
    .await;
    let http = reqwest::Client::new();
    let digest_of = |url: String| {
        let http = http.clone();
        async move {
            let r = http.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200, "{url}");
            let ns = r
                .headers()
                .get("oci-namespace")
                .map(|v| v.to_str().unwrap().to_string());
            (
                r.headers()["docker-content-digest"]
                    .to_str()
                    .unwrap()
                    .to_string(),
                ns,
            )
        }
    };
    let p = &proxy.url;
    assert_eq!(
        digest_of(format!("{p}/v2/shared/app/manifests/v1")).await.0,
        a.digest
    );
    let (d, ns) = digest_of(format!("{p}/v2/shared/app/manifests/v1?ns=regb.test")).await;
    assert_eq!(d, b.digest);
    assert_eq!(ns.as_deref(), Some("regb.test"));
    assert_eq!(
        digest_of(format!("{p}/v2/shared/app/manifests/v1?ns=rega.test"))
            .await
            .0,
        a.digest
    );
    assert_eq!(
        digest_of(format!("{p}/v2/regb.test/shared/app/manifests/v1"))
            .await
            .0,
        b.digest
    );
    assert_eq!(
        digest_of(format!("{p}/v2/rega.test/shared/app/manifests/v1"))
            .await
            .0,
        a.digest
    );
    let r = http
        .get(format!("{p}/v2/shared/app/manifests/v1?ns=other.test"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // A real client through the path prefix (registries.conf `location` style).
    let dir = support::tempdir();
    let out = dir.path().join("out");
    let src = format!("docker://{}/regb.test/shared/app:v1", proxy.addr);
    let out2 = out.clone();
    tokio::task::spawn_blocking(move || skopeo_copy(&src, &out2))
        .await
        .unwrap();
    assert_dir_matches(&out, &b);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_is_502_naming_it() {
    let port = support::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let proxy = TestProxy::start(&proxy_config(&[("gone.test", &url)], "")).await;
    let r = reqwest::get(format!("{}/v2/x/manifests/v1", proxy.url))
        .await
        .unwrap();
    let (s, _, m) = error_code(r).await;
    assert_eq!(s, 502);
    assert!(m.contains("gone.test") && m.contains('x'), "{m}");
    proxy.shutdown().await;
}
