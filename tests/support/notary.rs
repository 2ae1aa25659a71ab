//! A real notary-server (and, for the `remote` flavour, a real notary-signer) on free loopback
//! ports with TLS from a throwaway [`TestCa`], and a [`NotaryCli`] wrapper around the real
//! `notary` publisher tool, so trust data in tests is exactly what Docker Content Trust writes.
//!
//! Flavours differ in who holds the server-managed keys (timestamp, and snapshot after
//! `key rotate -r`): `local` trust makes ed25519 keys, a signer with `key_algorithm: ecdsa`
//! makes P-256 keys (what Docker Hub has). Verification must handle both.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::pki::{IssuedCert, TestCa};
use super::proc::ChildGuard;
use super::{free_port, require_tool, tempdir, wait_for_tcp};

/// The passphrase every key in the test trust dirs is encrypted with.
pub const PASSPHRASE: &str = "trustgate-test-passphrase";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// `trust_service: local` — ed25519 server keys.
    Local,
    /// `trust_service: remote` backed by notary-signer — ecdsa server keys.
    Remote,
}

pub struct NotaryServer {
    pub flavour: Flavour,
    pub addr: SocketAddr,
    /// `https://127.0.0.1:<port>`
    pub url: String,
    /// The CA that issued the server's certificate (what `--ca` / `root_ca` take).
    pub ca_path: PathBuf,
    pub tls: IssuedCert,
    server: ChildGuard,
    // Field order matters for Drop: the server stops before the signer it talks to.
    signer: Option<ChildGuard>,
    dir: tempfile::TempDir,
}

impl NotaryServer {
    pub fn local() -> NotaryServer {
        NotaryServer::start(Flavour::Local)
    }

    pub fn remote() -> NotaryServer {
        NotaryServer::start(Flavour::Remote)
    }

    pub fn start(flavour: Flavour) -> NotaryServer {
        NotaryServer::start_with_auth(flavour, None, false)
    }

    /// Like [`start`](Self::start), with notary-server's `auth` section (e.g. `{"type":"token",
    /// "options":{realm, service, issuer, rootcertbundle}}`; see `tokenissuer`). With
    /// `plain_http` the server speaks HTTP: needed when the token realm is plain HTTP, since
    /// credentials are never sent from an https server to an http realm.
    pub fn start_with_auth(
        flavour: Flavour,
        auth: Option<serde_json::Value>,
        plain_http: bool,
    ) -> NotaryServer {
        let server_bin = require_tool("notary-server");
        let dir = tempdir();
        let ca = TestCa::new("trustgate notary test CA");
        let tls = ca.issue(dir.path(), "notary");
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

        let (trust_service, signer) = match flavour {
            Flavour::Local => (serde_json::json!({"type": "local"}), None),
            Flavour::Remote => {
                let signer_bin = require_tool("notary-signer");
                let grpc_port = free_port();
                let signer_cfg = serde_json::json!({
                    "server": {
                        "grpc_addr": format!("127.0.0.1:{grpc_port}"),
                        "tls_cert_file": tls.cert_path,
                        "tls_key_file": tls.key_path,
                        "client_ca_file": tls.ca_path,
                    },
                    "storage": {"backend": "memory"},
                });
                let cfg_path = dir.path().join("signer.json");
                std::fs::write(&cfg_path, signer_cfg.to_string()).unwrap();
                let mut cmd = Command::new(signer_bin);
                cmd.arg("-config").arg(&cfg_path);
                let mut guard =
                    ChildGuard::spawn("notary-signer", cmd, &dir.path().join("signer.log"));
                wait_for_tcp(
                    format!("127.0.0.1:{grpc_port}").parse().unwrap(),
                    Duration::from_secs(20),
                );
                guard.assert_running();
                let ts = serde_json::json!({
                    "type": "remote",
                    "hostname": "127.0.0.1",
                    "port": grpc_port.to_string(),
                    "key_algorithm": "ecdsa",
                    "tls_ca_file": tls.ca_path,
                    "tls_client_cert": tls.cert_path,
                    "tls_client_key": tls.key_path,
                });
                (ts, Some(guard))
            }
        };

        let mut server_cfg = serde_json::json!({
            "server": {
                "http_addr": addr.to_string(),
                "tls_cert_file": tls.cert_path,
                "tls_key_file": tls.key_path,
            },
            "trust_service": trust_service,
            "storage": {"backend": "memory"},
        });
        if let Some(auth) = auth {
            server_cfg["auth"] = auth;
        }
        if plain_http {
            if let Some(server) = server_cfg["server"].as_object_mut() {
                server.remove("tls_cert_file");
                server.remove("tls_key_file");
            }
        }
        let cfg_path = dir.path().join("server.json");
        std::fs::write(&cfg_path, server_cfg.to_string()).unwrap();
        let mut cmd = Command::new(server_bin);
        cmd.arg("-config").arg(&cfg_path);
        let server = ChildGuard::spawn("notary-server", cmd, &dir.path().join("server.log"));
        let mut me = NotaryServer {
            flavour,
            addr,
            url: format!("{}://{addr}", if plain_http { "http" } else { "https" }),
            ca_path: tls.ca_path.clone(),
            tls,
            server,
            signer,
            dir,
        };
        me.wait_healthy(Duration::from_secs(30));
        me
    }

    /// `127.0.0.1:<port>` (what Docker calls the trust server's host).
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// Stops the server (and its signer) now; the address then refuses connections.
    pub fn stop(&mut self) {
        self.server.stop();
        if let Some(s) = self.signer.as_mut() {
            s.stop();
        }
    }

    pub fn log_text(&self) -> String {
        self.server.log_text()
    }

    /// A scratch directory that lives as long as the server.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// Raw `GET /v2/<gun>/_trust/tuf/<file>` via curl: (status, body). For fixtures and
    /// oracle comparisons only; trustgate's own fetching is what the tests examine.
    pub fn get_raw(&self, gun: &str, file: &str) -> (u16, Vec<u8>) {
        let url = format!("{}/v2/{gun}/_trust/tuf/{file}", self.url);
        curl_get(&url, &self.ca_path)
    }

    /// trustgate's HTTP metadata source for this server (trusting its test CA).
    pub fn metadata_source(&self) -> trustgate::trust::fetch::HttpMetadataSource {
        let settings =
            trustgate::trust::fetch::settings_for(&self.url, Some(self.ca_path.clone())).unwrap();
        trustgate::trust::fetch::HttpMetadataSource::from_settings(settings).unwrap()
    }

    fn wait_healthy(&mut self, timeout: Duration) {
        let start = Instant::now();
        let url = format!("{}/_notary_server/health", self.url);
        loop {
            self.server.assert_running();
            if let Some(s) = self.signer.as_mut() {
                s.assert_running();
            }
            let (status, _) = curl_get(&url, &self.ca_path);
            if status == 200 {
                return;
            }
            if start.elapsed() > timeout {
                panic!(
                    "notary-server not healthy after {timeout:?} (last status {status}); log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn curl_get(url: &str, ca: &Path) -> (u16, Vec<u8>) {
    let body = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new(require_tool("curl"))
        .args(["-s", "-o"])
        .arg(body.path())
        .args(["-w", "%{http_code}", "--max-time", "5", "--cacert"])
        .arg(ca)
        .arg(url)
        .output()
        .expect("run curl");
    let status = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (status, std::fs::read(body.path()).unwrap_or_default())
}

/// How a delegation's public key is given to `notary delegation add`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelegationKeyKind {
    /// A self-signed x509 certificate → key type `ecdsa-x509` in the metadata.
    X509Cert,
    /// A `PUBLIC KEY` PEM → key type `ecdsa`.
    PublicKey,
}

/// A P-256 delegation key made by openssl (notary imports openssl-made keys, not the ones
/// `notary key generate -o` writes).
#[derive(Debug, Clone)]
pub struct DelegationKey {
    pub kind: DelegationKeyKind,
    pub private_key: PathBuf,
    /// The certificate or public key PEM handed to `delegation add`.
    pub public: PathBuf,
}

impl DelegationKey {
    pub fn generate(dir: &Path, name: &str, kind: DelegationKeyKind) -> DelegationKey {
        let openssl = require_tool("openssl");
        let private_key = dir.join(format!("{name}.key"));
        run_ok(
            Command::new(&openssl)
                .args([
                    "ecparam",
                    "-name",
                    "prime256v1",
                    "-genkey",
                    "-noout",
                    "-out",
                ])
                .arg(&private_key),
        );
        let public = match kind {
            DelegationKeyKind::X509Cert => {
                let p = dir.join(format!("{name}.crt"));
                run_ok(
                    Command::new(&openssl)
                        .args(["req", "-new", "-x509", "-days", "30", "-subj"])
                        .arg(format!("/CN={name}"))
                        .arg("-key")
                        .arg(&private_key)
                        .arg("-out")
                        .arg(&p),
                );
                p
            }
            DelegationKeyKind::PublicKey => {
                let p = dir.join(format!("{name}.pub"));
                run_ok(
                    Command::new(&openssl)
                        .args(["ec", "-pubout", "-in"])
                        .arg(&private_key)
                        .arg("-out")
                        .arg(&p),
                );
                p
            }
        };
        DelegationKey {
            kind,
            private_key,
            public,
        }
    }
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What `notary lookup GUN TAG` prints: `<tag> sha256:<hex> <size>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupLine {
    pub tag: String,
    /// `sha256:<hex>`
    pub digest: String,
    pub size: u64,
}

/// One row of `notary list GUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRow {
    pub name: String,
    /// `sha256:<hex>` (notary prints bare hex; normalised here).
    pub digest: String,
    pub size: u64,
    pub role: String,
}

/// The real `notary` CLI with its own trust dir and config pointing at one server.
pub struct NotaryCli {
    bin: PathBuf,
    config: PathBuf,
    /// `user:password` for a token-auth server (passed as `NOTARY_AUTH`, base64).
    auth: Option<String>,
    pub trust_dir: PathBuf,
    dir: tempfile::TempDir,
}

impl NotaryCli {
    pub fn new(server: &NotaryServer) -> NotaryCli {
        NotaryCli::for_server(&server.url, &server.ca_path)
    }

    pub fn for_server(url: &str, ca: &Path) -> NotaryCli {
        let dir = tempdir();
        let trust_dir = dir.path().join("trust");
        let config = dir.path().join("config.json");
        let cfg = serde_json::json!({
            "trust_dir": trust_dir,
            "remote_server": {"url": url, "root_ca": ca},
        });
        std::fs::write(&config, cfg.to_string()).unwrap();
        NotaryCli {
            bin: require_tool("notary"),
            config,
            auth: None,
            trust_dir,
            dir,
        }
    }

    /// Logs in to a token-auth server as `user` (notary reads `NOTARY_AUTH`).
    pub fn with_auth(mut self, user: &str, password: &str) -> NotaryCli {
        self.auth = Some(format!("{user}:{password}"));
        self
    }

    /// A scratch directory that lives as long as this CLI (for keys and target files).
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `notary -c CFG ARGS...`, feeding `stdin`; Ok(stdout) on exit 0, Err(stdout+stderr).
    pub fn try_run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c").arg(&self.config).args(args);
        for role in ["ROOT", "TARGETS", "SNAPSHOT", "DELEGATION"] {
            cmd.env(format!("NOTARY_{role}_PASSPHRASE"), PASSPHRASE);
        }
        if let Some(auth) = &self.auth {
            use base64::Engine as _;
            cmd.env(
                "NOTARY_AUTH",
                base64::engine::general_purpose::STANDARD.encode(auth),
            );
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn notary");
        {
            let mut input = child.stdin.take().expect("stdin");
            if let Some(s) = stdin {
                input.write_all(s.as_bytes()).expect("write stdin");
            }
        }
        let out = child.wait_with_output().expect("wait notary");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// Like [`try_run`](Self::try_run) without stdin, panicking with notary's output on failure.
    pub fn run(&self, args: &[&str]) -> String {
        self.try_run(args, None)
            .unwrap_or_else(|e| panic!("notary {args:?} failed:\n{e}"))
    }

    pub fn init(&self, gun: &str) {
        self.run(&["init", gun]);
    }

    /// Stages `tag` → the exact `bytes` (like a manifest as the registry serves it), signed by
    /// `roles` (empty = `targets`).
    pub fn add(&self, gun: &str, tag: &str, bytes: &[u8], roles: &[&str]) {
        let file = self.dir.path().join(format!("target-{}", hex_of(bytes)));
        std::fs::write(&file, bytes).unwrap();
        let file = file.to_string_lossy().into_owned();
        let mut args = vec!["add", gun, tag, file.as_str()];
        let roles = roles.join(",");
        if !roles.is_empty() {
            args.extend(["--roles", roles.as_str()]);
        }
        self.run(&args);
    }

    /// Stages `tag` by size and sha256 only (as the Docker CLI writes targets).
    pub fn addhash(&self, gun: &str, tag: &str, size: u64, sha256_hex: &str, roles: &[&str]) {
        let size = size.to_string();
        let mut args = vec!["addhash", gun, tag, size.as_str(), "--sha256", sha256_hex];
        let roles = roles.join(",");
        if !roles.is_empty() {
            args.extend(["--roles", roles.as_str()]);
        }
        self.run(&args);
    }

    pub fn remove(&self, gun: &str, tag: &str, roles: &[&str]) {
        let mut args = vec!["remove", gun, tag];
        let roles = roles.join(",");
        if !roles.is_empty() {
            args.extend(["--roles", roles.as_str()]);
        }
        self.run(&args);
    }

    pub fn publish(&self, gun: &str) {
        self.run(&["publish", gun]);
    }

    /// `notary lookup GUN TAG`: the parsed line, or notary's error text.
    pub fn lookup(&self, gun: &str, tag: &str) -> Result<LookupLine, String> {
        let out = self.try_run(&["lookup", gun, tag], None)?;
        let line = out.trim();
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            [t, d, s] => Ok(LookupLine {
                tag: t.to_string(),
                digest: d.to_string(),
                size: s.parse().map_err(|_| format!("bad size in {line:?}"))?,
            }),
            _ => Err(format!("unexpected lookup output {line:?}")),
        }
    }

    /// `notary list GUN` (all roles, as notary walks them).
    pub fn list(&self, gun: &str) -> Vec<ListRow> {
        let out = self.run(&["list", gun]);
        out.lines()
            .skip(2) // header and dashes
            .filter_map(|l| {
                let p: Vec<&str> = l.split_whitespace().collect();
                match p.as_slice() {
                    [n, d, s, r] => Some(ListRow {
                        name: n.to_string(),
                        digest: format!("sha256:{d}"),
                        size: s.parse().ok()?,
                        role: r.to_string(),
                    }),
                    _ => None,
                }
            })
            .collect()
    }

    /// The role `notary list` reports for `tag`.
    pub fn list_role(&self, gun: &str, tag: &str) -> Option<String> {
        self.list(gun)
            .into_iter()
            .find(|r| r.name == tag)
            .map(|r| r.role)
    }

    /// `delegation add GUN ROLE KEY` with `--all-paths` (paths = None) or `--paths` each.
    pub fn delegation_add(
        &self,
        gun: &str,
        role: &str,
        key: &DelegationKey,
        paths: Option<&[&str]>,
    ) {
        let public = key.public.to_string_lossy().into_owned();
        let mut args = vec!["delegation", "add", gun, role, public.as_str()];
        match paths {
            None => args.push("--all-paths"),
            Some(ps) => {
                for p in ps {
                    args.extend(["--paths", p]);
                }
            }
        }
        self.run(&args);
    }

    /// `key import KEY --role ROLE` (the private half of a delegation key).
    pub fn key_import(&self, key: &Path, role: &str) {
        let k = key.to_string_lossy().into_owned();
        self.run(&["key", "import", k.as_str(), "--role", role]);
    }

    /// Makes a delegation with a fresh openssl key, imports its private key, and publishes.
    pub fn add_delegation(
        &self,
        gun: &str,
        role: &str,
        kind: DelegationKeyKind,
        paths: Option<&[&str]>,
    ) -> DelegationKey {
        let name = role.replace('/', "-");
        let key = DelegationKey::generate(self.dir.path(), &name, kind);
        self.delegation_add(gun, role, &key, paths);
        self.key_import(&key.private_key, role);
        self.publish(gun);
        key
    }

    /// `key rotate GUN snapshot -r`: the server takes over the snapshot key.
    pub fn rotate_snapshot_to_server(&self, gun: &str) {
        self.run(&["key", "rotate", gun, "snapshot", "-r"]);
    }

    /// `key rotate GUN root`, answering the confirmation prompt with yes.
    pub fn rotate_root(&self, gun: &str) {
        self.try_run(&["key", "rotate", gun, "root"], Some("yes\n"))
            .unwrap_or_else(|e| panic!("notary key rotate root failed:\n{e}"));
    }
}

fn hex_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `sha256:<hex>` of `bytes`, as notary reports a target's digest.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex_of(bytes))
}

/// One entry of `docker trust inspect`'s `SignedTags`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerSignedTag {
    pub tag: String,
    /// `sha256:<hex>` (docker prints bare hex; normalised here).
    pub digest: String,
    /// Docker's signer names: `Repo Admin` for `targets`, the delegation's last path element
    /// otherwise (e.g. `releases`).
    pub signers: Vec<String>,
}

/// `docker trust inspect GUN:TAG` against `server` — what the Docker client itself trusts.
/// Needs only the docker CLI (no engine): `DOCKER_CONTENT_TRUST_SERVER` names the server and
/// `DOCKER_CONFIG/tls/<host:port>/ca.crt` its CA. The GUN must be a valid image name.
pub fn docker_trust_inspect(server: &NotaryServer, gun: &str, tag: &str) -> Vec<DockerSignedTag> {
    let docker = require_tool("docker");
    let cfg = tempdir();
    let tls = cfg.path().join("tls").join(server.host_port());
    std::fs::create_dir_all(&tls).unwrap();
    std::fs::copy(&server.ca_path, tls.join("ca.crt")).unwrap();
    let out = run_ok(
        Command::new(docker)
            .env("DOCKER_CONFIG", cfg.path())
            .env("DOCKER_CONTENT_TRUST_SERVER", &server.url)
            .args(["trust", "inspect"])
            .arg(format!("{gun}:{tag}")),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["SignedTags"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| DockerSignedTag {
            tag: t["SignedTag"].as_str().unwrap_or_default().to_string(),
            digest: format!("sha256:{}", t["Digest"].as_str().unwrap_or_default()),
            signers: t["Signers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect(),
        })
        .collect()
}
