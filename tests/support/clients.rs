//! Real pull clients — skopeo, containerd (`ctr`) and podman — each configured the way an
//! operator would point it at trustgate, and each usable against any registry address, so the
//! same wrapper first proves the plumbing against a bare registry and then runs through the proxy.
//!
//! containerd and podman are given a *primary* registry (the host in the image reference) and
//! the proxy as the place to actually go. The primary should be [`CLOSED_REGISTRY`]: a loopback
//! port nothing listens on, so if a client ever fell back from the proxy to the primary the pull
//! fails (a refusal stays final) and nothing leaves loopback.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use super::proc::ChildGuard;
use super::{require_tool, tempdir};

/// A loopback address nothing listens on (port 1 is privileged and unused): use it as the
/// registry name in image references that containerd and podman must reach only through the
/// proxy.
pub const CLOSED_REGISTRY: &str = "127.0.0.1:1";

/// How long any single client command may run before it is killed (by its own pid).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// How to reach a registry (or trustgate): plain HTTP, or TLS trusting exactly one CA file.
#[derive(Clone, Debug)]
pub enum Transport {
    PlainHttp,
    Tls { ca_file: PathBuf },
}

impl Transport {
    pub fn scheme(&self) -> &'static str {
        match self {
            Transport::PlainHttp => "http",
            Transport::Tls { .. } => "https",
        }
    }
}

/// What a client command did.
#[derive(Debug)]
pub struct ClientRun {
    pub command: String,
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl ClientRun {
    /// stdout and stderr together, for `contains` assertions on messages.
    pub fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Panics with the whole output unless the command succeeded.
    pub fn assert_success(&self) {
        assert!(
            self.success,
            "`{}` failed:\n{}",
            self.command,
            self.output()
        );
    }

    /// Panics with the whole output unless the command failed.
    pub fn assert_failure(&self) {
        assert!(
            !self.success,
            "`{}` unexpectedly succeeded:\n{}",
            self.command,
            self.output()
        );
    }
}

/// The result of a pull: the command's run, plus what the client says it got.
#[derive(Debug)]
pub struct PullResult {
    pub run: ClientRun,
    /// The manifest digest the client recorded (`sha256:<hex>`), when the pull succeeded.
    pub digest: Option<String>,
    /// The manifest bytes the client stored, when the client exposes them.
    pub manifest: Option<Vec<u8>>,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Runs `cmd` to completion (or kills it, by its pid, after `timeout`), capturing its output.
pub fn run_command(mut cmd: Command, timeout: Duration) -> ClientRun {
    let command = format!("{cmd:?}");
    let logs = tempdir();
    let out_path = logs.path().join("stdout");
    let err_path = logs.path().join("stderr");
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("failed to start {command}: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for client") {
            break Some(status);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let mut stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    if status.is_none() {
        stderr.push_str(&format!("\n[killed after {timeout:?}]"));
    }
    ClientRun {
        command,
        success: status.map(|s| s.success()).unwrap_or(false),
        stdout,
        stderr,
    }
}

/// A directory holding only `ca.crt`: skopeo's and podman's `--*cert-dir` treat any other
/// file there (a stray `*.key`) as a client certificate and fail.
fn cert_dir_with(ca_file: &Path, dir: &Path) -> PathBuf {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).expect("mkdir certs");
    std::fs::copy(ca_file, certs.join("ca.crt")).expect("copy ca.crt");
    certs
}

// ---------------------------------------------------------------------------------------------
// skopeo

/// `skopeo copy docker://IMAGE dir:OUT`, IMAGE being `HOST/REPO:TAG` or `HOST/REPO@sha256:...`
/// with HOST the registry (or trustgate) itself. Returns the manifest bytes skopeo wrote and
/// their digest. For a multi-platform image skopeo copies only this machine's platform and
/// writes *that* manifest: use [`skopeo_copy_with`] and `--all` to keep the index.
pub fn skopeo_copy(image: &str, transport: &Transport) -> PullResult {
    skopeo_copy_with(image, transport, &[])
}

/// [`skopeo_copy`] with extra `skopeo copy` arguments (e.g. `--all`).
pub fn skopeo_copy_with(image: &str, transport: &Transport, extra: &[&str]) -> PullResult {
    let work = tempdir();
    let out = work.path().join("out");
    let mut cmd = skopeo(transport, "copy", work.path());
    cmd.args(["--retry-times", "0"])
        .args(extra)
        .arg(format!("docker://{image}"))
        .arg(format!("dir:{}", out.display()));
    let run = run_command(cmd, CLIENT_TIMEOUT);
    let manifest = if run.success {
        std::fs::read(out.join("manifest.json")).ok()
    } else {
        None
    };
    let digest = manifest.as_deref().map(sha256_digest);
    PullResult {
        run,
        digest,
        manifest,
    }
}

/// `skopeo inspect --raw docker://IMAGE`: the manifest (or index) bytes exactly as served
/// for IMAGE, without fetching blobs.
pub fn skopeo_inspect_raw(image: &str, transport: &Transport) -> PullResult {
    let work = tempdir();
    let mut cmd = skopeo(transport, "inspect", work.path());
    cmd.args(["--retry-times", "0", "--raw"])
        .arg(format!("docker://{image}"));
    let run = run_command(cmd, CLIENT_TIMEOUT);
    let manifest = run.success.then(|| run.stdout.clone().into_bytes());
    let digest = manifest.as_deref().map(sha256_digest);
    PullResult {
        run,
        digest,
        manifest,
    }
}

/// `skopeo list-tags docker://HOST/REPO`: the tag names the registry (or trustgate) lists.
/// Returns the run and, when it succeeded, the tags.
pub fn skopeo_list_tags(repo: &str, transport: &Transport) -> (ClientRun, Vec<String>) {
    let work = tempdir();
    let mut cmd = skopeo(transport, "list-tags", work.path());
    cmd.args(["--retry-times", "0"])
        .arg(format!("docker://{repo}"));
    let run = run_command(cmd, CLIENT_TIMEOUT);
    let tags = if run.success {
        serde_json::from_str::<serde_json::Value>(&run.stdout)
            .ok()
            .and_then(|v| {
                v["Tags"].as_array().map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_string))
                        .collect()
                })
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    (run, tags)
}

/// `skopeo --insecure-policy SUBCOMMAND` with the source transport's TLS flags.
fn skopeo(transport: &Transport, subcommand: &str, work: &Path) -> Command {
    let mut cmd = Command::new(require_tool("skopeo"));
    // The machine's policy.json is not ours to rely on; trust decisions are trustgate's job.
    cmd.args(["--insecure-policy", subcommand]);
    let (verify_flag, cert_flag) = if subcommand == "copy" {
        ("--src-tls-verify=false", "--src-cert-dir")
    } else {
        ("--tls-verify=false", "--cert-dir")
    };
    match transport {
        Transport::PlainHttp => {
            cmd.arg(verify_flag);
        }
        Transport::Tls { ca_file } => {
            cmd.arg(cert_flag).arg(cert_dir_with(ca_file, work));
        }
    }
    cmd
}

// ---------------------------------------------------------------------------------------------
// containerd

/// A real containerd daemon with its own root, state and socket, the `cri` plugin disabled.
/// Ended by its pid when dropped (the guard is declared first so it drops before the dirs).
pub struct Containerd {
    guard: ChildGuard,
    pub socket: PathBuf,
    dir: tempfile::TempDir,
}

impl Containerd {
    pub fn start() -> Containerd {
        let bin = require_tool("containerd");
        require_tool("ctr");
        let dir = tempdir();
        let root = dir.path().join("root");
        let state = dir.path().join("state");
        let socket = dir.path().join("containerd.sock");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
"#,
                root = root.display(),
                state = state.display(),
                sock = socket.display(),
            ),
        )
        .expect("write containerd config");
        let mut cmd = Command::new(bin);
        cmd.arg("--config").arg(&config);
        let mut guard = ChildGuard::spawn("containerd", cmd, &dir.path().join("containerd.log"));
        let start = Instant::now();
        loop {
            guard.assert_running();
            if socket.exists() {
                let mut v = Command::new(require_tool("ctr"));
                v.arg("--address").arg(&socket).arg("version");
                if run_command(v, Duration::from_secs(10)).success {
                    break;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "containerd did not come up; log:\n{}",
                guard.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Containerd { guard, socket, dir }
    }

    /// The daemon's log so far (it logs each host it tries and why it moved on).
    pub fn log_text(&self) -> String {
        self.guard.log_text()
    }

    fn ctr(&self) -> Command {
        let mut cmd = Command::new(require_tool("ctr"));
        cmd.arg("--address").arg(&self.socket);
        cmd
    }

    /// `ctr images pull --hosts-dir DIR IMAGE`, where `DIR/<registry of IMAGE>/hosts.toml`
    /// makes `proxy` (`host:port`) the `server` — see [`hosts_toml`]. Returns the digest
    /// `ctr images ls` records for IMAGE and the manifest bytes from the content store.
    pub fn pull(&self, image: &str, proxy: &str, transport: &Transport) -> PullResult {
        self.pull_with_hosts_toml(image, &hosts_toml(proxy, transport), &[])
    }

    /// `ctr images pull [EXTRA...]` with `hosts_toml` filed under IMAGE's registry (e.g. a
    /// file from `deploy/containerd/` with its addresses substituted). EXTRA: e.g.
    /// `--all-platforms`, `--platform linux/arm64`.
    pub fn pull_with_hosts_toml(
        &self,
        image: &str,
        hosts_toml: &str,
        extra: &[&str],
    ) -> PullResult {
        let registry = image.split('/').next().expect("image has a registry part");
        let hosts = tempfile::Builder::new()
            .prefix("hosts-")
            .tempdir_in(self.dir.path())
            .expect("hosts dir");
        let reg_dir = hosts.path().join(registry);
        std::fs::create_dir_all(&reg_dir).expect("mkdir hosts.d/<registry>");
        std::fs::write(reg_dir.join("hosts.toml"), hosts_toml).expect("write hosts.toml");
        let mut cmd = self.ctr();
        cmd.args(["images", "pull", "--hosts-dir"])
            .arg(hosts.path())
            .args(extra)
            .arg(image);
        let run = run_command(cmd, CLIENT_TIMEOUT);
        let digest = if run.success {
            self.image_digest(image)
        } else {
            None
        };
        let manifest = digest.as_deref().and_then(|d| self.content(d));
        PullResult {
            run,
            digest,
            manifest,
        }
    }

    /// The target digest `ctr images ls` shows for `image`, if containerd has it.
    pub fn image_digest(&self, image: &str) -> Option<String> {
        let mut cmd = self.ctr();
        cmd.args(["images", "ls"]);
        let run = run_command(cmd, Duration::from_secs(30));
        run.stdout.lines().skip(1).find_map(|line| {
            let mut cols = line.split_whitespace();
            let name = cols.next()?;
            let _media_type = cols.next()?;
            let digest = cols.next()?;
            (name == image).then(|| digest.to_string())
        })
    }

    /// A blob from containerd's content store, by digest.
    pub fn content(&self, digest: &str) -> Option<Vec<u8>> {
        let out = self
            .ctr()
            .args(["content", "get", digest])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status.success().then_some(out.stdout)
    }

    /// Removes `image` from containerd's image store, so the next pull resolves again.
    pub fn remove_image(&self, image: &str) -> ClientRun {
        let mut cmd = self.ctr();
        cmd.args(["images", "rm", "--sync", image]);
        run_command(cmd, Duration::from_secs(30))
    }
}

/// A `hosts.toml` that sends every pull and resolve for the registry it is filed under to
/// `proxy` (`host:port`). The proxy is the `server`, so containerd never contacts the registry
/// itself; a mirror-only entry (`[host]` with `server` left to the registry) would not enforce
/// anything, because containerd treats a 403 from a mirror as "try the next host". containerd
/// 1.6 rejects a file without a `[host]` table ("invalid `host` tree"), so the proxy is listed
/// there too: the only hosts containerd can try are the proxy, twice.
pub fn hosts_toml(proxy: &str, transport: &Transport) -> String {
    let url = format!("{}://{proxy}", transport.scheme());
    let tls = match transport {
        Transport::PlainHttp => String::new(),
        Transport::Tls { ca_file } => format!("ca = {:?}\n", ca_file.display().to_string()),
    };
    format!(
        "server = \"{url}\"\ncapabilities = [\"pull\", \"resolve\"]\n{tls}\n\
         [host.\"{url}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  {tls}"
    )
}

// ---------------------------------------------------------------------------------------------
// podman

/// podman with its own storage (vfs, so it works unprivileged-storage-free in a container),
/// file events and cgroupfs; each pull gets a registries.conf remapping the image's registry.
pub struct Podman {
    dir: tempfile::TempDir,
}

impl Default for Podman {
    fn default() -> Self {
        Self::new()
    }
}

impl Podman {
    pub fn new() -> Podman {
        require_tool("podman");
        Podman { dir: tempdir() }
    }

    fn podman(&self, registries_conf: Option<&Path>) -> Command {
        let mut cmd = Command::new(require_tool("podman"));
        if let Some(conf) = registries_conf {
            cmd.env("CONTAINERS_REGISTRIES_CONF", conf);
        }
        cmd.arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("runroot"))
            .args([
                "--storage-driver",
                "vfs",
                "--events-backend",
                "file",
                "--cgroup-manager",
                "cgroupfs",
            ]);
        cmd
    }

    /// `podman pull IMAGE` with a registries.conf whose `location` for IMAGE's registry is
    /// `location` (trustgate's `host:port`, optionally with a path). See [`registries_conf`].
    pub fn pull(&self, image: &str, location: &str, transport: &Transport) -> PullResult {
        let registry = image.split('/').next().expect("image has a registry part");
        let ca_file = match transport {
            Transport::Tls { ca_file } => Some(ca_file.as_path()),
            Transport::PlainHttp => None,
        };
        self.pull_with_registries_conf(
            image,
            &registries_conf(registry, location, transport),
            ca_file,
        )
    }

    /// `podman pull IMAGE` under the given registries.conf text (e.g. a file from
    /// `deploy/containers/` with its addresses substituted), trusting `ca_file` for TLS.
    pub fn pull_with_registries_conf(
        &self,
        image: &str,
        conf_text: &str,
        ca_file: Option<&Path>,
    ) -> PullResult {
        let work = tempfile::Builder::new()
            .prefix("pull-")
            .tempdir_in(self.dir.path())
            .expect("pull dir");
        let conf = work.path().join("registries.conf");
        std::fs::write(&conf, conf_text).expect("write registries.conf");
        let mut cmd = self.podman(Some(&conf));
        cmd.arg("pull");
        if let Some(ca_file) = ca_file {
            cmd.arg("--cert-dir")
                .arg(cert_dir_with(ca_file, work.path()));
        }
        cmd.arg(image);
        let run = run_command(cmd, CLIENT_TIMEOUT);
        let digest = if run.success {
            self.image_digest(image)
        } else {
            None
        };
        PullResult {
            run,
            digest,
            manifest: None,
        }
    }

    /// The manifest digest podman recorded for `image`.
    pub fn image_digest(&self, image: &str) -> Option<String> {
        let mut cmd = self.podman(None);
        cmd.args(["image", "inspect", "--format", "{{.Digest}}", image]);
        let run = run_command(cmd, Duration::from_secs(30));
        let d = run.stdout.trim();
        (run.success && d.starts_with("sha256:")).then(|| d.to_string())
    }

    /// Removes `image` from podman's store.
    pub fn remove_image(&self, image: &str) -> ClientRun {
        let mut cmd = self.podman(None);
        cmd.args(["rmi", "--force", image]);
        run_command(cmd, Duration::from_secs(30))
    }
}

/// A registries.conf (v2) that remaps `registry` to `location`. A `location` remap, unlike a
/// `[[registry.mirror]]`, leaves podman nowhere else to go: with a mirror, podman retries the
/// mirror and then falls back to the original location, bypassing the proxy.
pub fn registries_conf(registry: &str, location: &str, transport: &Transport) -> String {
    let insecure = matches!(transport, Transport::PlainHttp);
    format!(
        "unqualified-search-registries = []\n\n[[registry]]\nprefix = \"{registry}\"\n\
         location = \"{location}\"\ninsecure = {insecure}\n"
    )
}
