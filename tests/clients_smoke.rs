//! The client wrappers work against a bare real registry before trustgate is put in between:
//! skopeo directly, containerd through a hosts.toml `server`, podman through a registries.conf
//! `location` remap — each reports the digest of the manifest that was pushed.
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::clients::{
    self, sha256_digest, skopeo_copy, skopeo_copy_with, skopeo_inspect_raw, Containerd, Podman,
    Transport, CLOSED_REGISTRY,
};
use support::pki::TestCa;
use support::proc::ChildGuard;

/// A real docker-registry on an ephemeral loopback port, plain HTTP or TLS.
struct Registry {
    _guard: ChildGuard,
    host: String,
    _dir: tempfile::TempDir,
}

fn start_registry(tls: Option<(&Path, &Path)>) -> Registry {
    let bin = support::require_tool("docker-registry");
    let dir = support::tempdir();
    let port = support::free_port();
    let host = format!("127.0.0.1:{port}");
    let tls_yaml = match tls {
        Some((cert, key)) => format!(
            "\n  tls:\n    certificate: {}\n    key: {}",
            cert.display(),
            key.display()
        ),
        None => String::new(),
    };
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}{tls_yaml}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("serve").arg(&config);
    let mut guard = ChildGuard::spawn("docker-registry", cmd, &dir.path().join("registry.log"));
    support::wait_for_tcp(host.parse::<SocketAddr>().unwrap(), Duration::from_secs(20));
    guard.assert_running();
    Registry {
        _guard: guard,
        host,
        _dir: dir,
    }
}

/// Builds a one-layer linux/amd64 schema2 image deterministically (sorted tar, mtime 0,
/// `gzip -n`), pushes it as `repo:tag`, and returns the manifest digest.
fn push_small_image(base: &str, client: &reqwest::Client, repo: &str, tag: &str) -> String {
    sha256_digest(&push_platform_image(base, client, repo, tag, "amd64"))
}

/// One runtime for every push in this test binary: a reqwest client's pooled connections are
/// driven by tasks on the runtime that opened them, so a client must not outlive its runtime.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    })
    .block_on(f)
}

const SCHEMA2: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

fn put_manifest(
    base: &str,
    client: &reqwest::Client,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) {
    block_on(async {
        let resp = client
            .put(format!("{base}/v2/{repo}/manifests/{reference}"))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "put manifest");
    });
}

/// A two-platform image (linux/amd64 + linux/arm64) as a Docker manifest list at `repo:tag`;
/// returns the list's digest.
fn push_multi_platform_image(
    base: &str,
    client: &reqwest::Client,
    repo: &str,
    tag: &str,
) -> String {
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let m = push_platform_image(base, client, repo, &format!("{tag}-{arch}"), arch);
        entries.push(format!(
            r#"{{"mediaType":"{SCHEMA2}","size":{},"digest":"{}","platform":{{"architecture":"{arch}","os":"linux"}}}}"#,
            m.len(),
            sha256_digest(&m)
        ));
    }
    let list = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_LIST}","manifests":[{}]}}"#,
        entries.join(",")
    );
    put_manifest(base, client, repo, tag, MANIFEST_LIST, list.as_bytes());
    sha256_digest(list.as_bytes())
}

/// Pushes a one-layer image for `arch` as `repo:reference`; returns the manifest bytes.
fn push_platform_image(
    base: &str,
    client: &reqwest::Client,
    repo: &str,
    reference: &str,
    arch: &str,
) -> Vec<u8> {
    let work = support::tempdir();
    let rootfs = work.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(
        rootfs.join("hello.txt"),
        format!("hello from {repo} on {arch}\n"),
    )
    .unwrap();
    let tar = work.path().join("layer.tar");
    let st = Command::new("tar")
        .args([
            "--sort=name",
            "--mtime=@0",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-C",
        ])
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let tar_bytes = std::fs::read(&tar).unwrap();
    let gz = Command::new("gzip")
        .args(["-n", "-c"])
        .arg(&tar)
        .output()
        .unwrap();
    assert!(gz.status.success());
    let layer = gz.stdout;
    let config = format!(
        r#"{{"architecture":"{arch}","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
        sha256_digest(&tar_bytes)
    )
    .into_bytes();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":{},"digest":"{}"}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":{},"digest":"{}"}}]}}"#,
        config.len(),
        sha256_digest(&config),
        layer.len(),
        sha256_digest(&layer)
    )
    .into_bytes();
    block_on(async {
        for blob in [&layer, &config] {
            let resp = client
                .post(format!("{base}/v2/{repo}/blobs/uploads/"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 202, "start upload");
            let loc = resp.headers()["location"].to_str().unwrap().to_string();
            let mut url = url::Url::parse(base).unwrap().join(&loc).unwrap();
            url.query_pairs_mut()
                .append_pair("digest", &sha256_digest(blob));
            let resp = client.put(url).body(blob.clone()).send().await.unwrap();
            assert_eq!(resp.status(), 201, "finish upload");
        }
    });
    put_manifest(base, client, repo, reference, SCHEMA2, &manifest);
    manifest
}

#[test]
fn clients_pull_from_a_plain_http_registry() {
    let reg = start_registry(None);
    let pushed = push_small_image(
        &format!("http://{}", reg.host),
        &reqwest::Client::new(),
        "smoke/plain",
        "1.0",
    );
    let t = Transport::PlainHttp;

    let by_tag = skopeo_copy(&format!("{}/smoke/plain:1.0", reg.host), &t);
    by_tag.run.assert_success();
    assert_eq!(by_tag.digest.as_deref(), Some(pushed.as_str()));

    let by_digest = skopeo_copy(&format!("{}/smoke/plain@{pushed}", reg.host), &t);
    by_digest.run.assert_success();
    assert_eq!(by_digest.manifest, by_tag.manifest);

    // containerd and podman name the closed primary; only the hosts.toml / registries.conf
    // redirection can make these pulls succeed.
    let image = format!("{CLOSED_REGISTRY}/smoke/plain:1.0");
    let ctd = Containerd::start();
    let pulled = ctd.pull(&image, &reg.host, &t);
    pulled.run.assert_success();
    assert_eq!(
        pulled.digest.as_deref(),
        Some(pushed.as_str()),
        "{}",
        pulled.run.output()
    );
    assert_eq!(
        pulled.manifest, by_tag.manifest,
        "content store holds the pushed manifest"
    );

    let podman = Podman::new();
    let pulled = podman.pull(&image, &reg.host, &t);
    pulled.run.assert_success();
    assert_eq!(
        pulled.digest.as_deref(),
        Some(pushed.as_str()),
        "{}",
        pulled.run.output()
    );
}

#[test]
fn clients_pull_from_a_tls_registry_trusting_only_the_test_ca() {
    let dir = support::tempdir();
    let ca = TestCa::new("trustgate clients smoke CA");
    let issued = ca.issue(dir.path(), "registry");
    let reg = start_registry(Some((&issued.cert_path, &issued.key_path)));
    let ca_pem = reqwest::Certificate::from_pem(ca.ca_pem.as_bytes()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca_pem)
        .build()
        .unwrap();
    let pushed = push_small_image(&format!("https://{}", reg.host), &http, "smoke/tls", "2.0");
    let t = Transport::Tls {
        ca_file: issued.ca_path.clone(),
    };

    let copied = skopeo_copy(&format!("{}/smoke/tls:2.0", reg.host), &t);
    copied.run.assert_success();
    assert_eq!(copied.digest.as_deref(), Some(pushed.as_str()));

    let image = format!("{CLOSED_REGISTRY}/smoke/tls:2.0");
    let ctd = Containerd::start();
    let pulled = ctd.pull(&image, &reg.host, &t);
    pulled.run.assert_success();
    assert_eq!(pulled.digest.as_deref(), Some(pushed.as_str()));

    let pulled = Podman::new().pull(&image, &reg.host, &t);
    pulled.run.assert_success();
    assert_eq!(pulled.digest.as_deref(), Some(pushed.as_str()));
}

#[test]
fn clients_fail_when_the_proxy_is_not_there_and_never_reach_the_primary() {
    // Nothing listens at `gone`; a pull must fail rather than succeed some other way.
    let gone = format!("127.0.0.1:{}", support::free_port());
    let image = format!("{CLOSED_REGISTRY}/smoke/none:1.0");
    let t = Transport::PlainHttp;
    skopeo_copy(&format!("{gone}/smoke/none:1.0"), &t)
        .run
        .assert_failure();
    let ctd = Containerd::start();
    let pulled = ctd.pull(&image, &gone, &t);
    pulled.run.assert_failure();
    assert!(pulled.digest.is_none());
    let pulled = Podman::new().pull(&image, &gone, &t);
    pulled.run.assert_failure();
    assert!(clients::hosts_toml(&gone, &t).contains(&format!("server = \"http://{gone}\"")));
}

/// Replaces `from` in `text`, failing if the shipped file no longer contains it.
fn substitute(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "expected `{from}` in:\n{text}");
    text.replace(from, to)
}

#[test]
fn shipped_client_configs_send_pulls_to_the_address_they_name() {
    // The files in deploy/ with only their addresses replaced: the registry stands in for
    // trustgate, and the image names the closed primary, so only the shipped redirection can
    // make these pulls succeed.
    let dir = support::tempdir();
    let ca = TestCa::new("trustgate deploy smoke CA");
    let issued = ca.issue(dir.path(), "registry");
    let reg = start_registry(Some((&issued.cert_path, &issued.key_path)));
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let base = format!("https://{}", reg.host);
    let pushed = push_small_image(&base, &http, "smoke/deploy", "1.0");
    // registries.conf's location carries the upstream's name as a path prefix.
    let pushed_prefixed = push_small_image(&base, &http, "docker.io/smoke/deploy", "1.0");
    let image = format!("{CLOSED_REGISTRY}/smoke/deploy:1.0");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");

    let hosts = std::fs::read_to_string(root.join("containerd/hosts.toml")).unwrap();
    let hosts = substitute(&hosts, "trustgate.internal.example:5000", &reg.host);
    let hosts = substitute(
        &hosts,
        "/etc/containerd/certs.d/docker.io/trustgate-ca.crt",
        &issued.ca_path.display().to_string(),
    );
    let ctd = Containerd::start();
    let pulled = ctd.pull_with_hosts_toml(&image, &hosts, &[]);
    pulled.run.assert_success();
    assert_eq!(pulled.digest.as_deref(), Some(pushed.as_str()));

    let conf = std::fs::read_to_string(root.join("containers/registries.conf")).unwrap();
    assert!(
        !conf
            .lines()
            .any(|l| l.trim_start().starts_with("[[registry.mirror]]")),
        "a mirror would fall back past trustgate"
    );
    let conf = substitute(&conf, "trustgate.internal.example:5000", &reg.host);
    let conf = substitute(
        &conf,
        "prefix = \"docker.io\"",
        &format!("prefix = \"{CLOSED_REGISTRY}\""),
    );
    let pulled = Podman::new().pull_with_registries_conf(&image, &conf, Some(&issued.ca_path));
    pulled.run.assert_success();
    assert_eq!(pulled.digest.as_deref(), Some(pushed_prefixed.as_str()));
}

#[test]
fn clients_pull_a_multi_platform_image_and_report_the_index_digest() {
    let reg = start_registry(None);
    let http = reqwest::Client::new();
    let index =
        push_multi_platform_image(&format!("http://{}", reg.host), &http, "smoke/multi", "3.0");
    let t = Transport::PlainHttp;
    let tagged = format!("{}/smoke/multi:3.0", reg.host);

    let raw = skopeo_inspect_raw(&tagged, &t);
    raw.run.assert_success();
    assert_eq!(raw.digest.as_deref(), Some(index.as_str()));
    let all = skopeo_copy_with(&tagged, &t, &["--all"]);
    all.run.assert_success();
    assert_eq!(all.digest.as_deref(), Some(index.as_str()));
    // Without --all skopeo keeps only this platform's manifest: not the index digest.
    let one = skopeo_copy(&tagged, &t);
    one.run.assert_success();
    assert_ne!(one.digest.as_deref(), Some(index.as_str()));

    let image = format!("{CLOSED_REGISTRY}/smoke/multi:3.0");
    let ctd = Containerd::start();
    let pulled = ctd.pull(&image, &reg.host, &t);
    pulled.run.assert_success();
    assert_eq!(
        pulled.digest.as_deref(),
        Some(index.as_str()),
        "ctr records the index"
    );
    assert_eq!(pulled.manifest, raw.manifest);

    let pulled = Podman::new().pull(&image, &reg.host, &t);
    pulled.run.assert_success();
    assert_eq!(
        pulled.digest.as_deref(),
        Some(index.as_str()),
        "podman records the list"
    );
}
