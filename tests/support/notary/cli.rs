//! The real `notary` CLI (the publisher's tool, what `docker trust sign` runs underneath) with
//! its own trust dir, and openssl-made delegation keys.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{NotaryServer, PASSPHRASE};
use crate::support::{require_tool, tempdir};

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

pub(super) fn run_ok(cmd: &mut Command) -> String {
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

    /// Sets the client's `trust_pinning` section (e.g. `{"certs": {GUN: [root keyid]}}` or
    /// `{"ca": {prefix: CA file}, "disable_tofu": true}`), as Notary's config file has it.
    pub fn with_trust_pinning(self, pinning: serde_json::Value) -> NotaryCli {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let mut cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
        cfg["trust_pinning"] = pinning;
        std::fs::write(&self.config, cfg.to_string()).unwrap();
        self
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

    /// `init GUN --rootkey KEY --rootcert CERT`: a root key and certificate made outside notary
    /// (e.g. issued by a CA, for CA pinning). KEY must be PKCS#8 encrypted with [`PASSPHRASE`].
    pub fn init_with_root(&self, gun: &str, rootkey: &Path, rootcert: &Path) {
        let (k, c) = (rootkey.to_string_lossy(), rootcert.to_string_lossy());
        self.run(&["init", gun, "--rootkey", &k, "--rootcert", &c]);
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

    /// Stages `tag` and tries to publish, returning notary's verdict (a target outside the
    /// role's paths makes the publish fail); on failure the staged changes are dropped.
    pub fn add_and_try_publish(
        &self,
        gun: &str,
        tag: &str,
        bytes: &[u8],
        roles: &[&str],
    ) -> Result<String, String> {
        self.add(gun, tag, bytes, roles);
        let r = self.try_run(&["publish", gun], None);
        if r.is_err() {
            self.run(&["reset", gun, "--all"]);
        }
        r
    }

    pub fn publish(&self, gun: &str) {
        self.run(&["publish", gun]);
    }

    /// `notary lookup GUN TAG`: the parsed line, or notary's error text.
    pub fn lookup(&self, gun: &str, tag: &str) -> Result<LookupLine, String> {
        let out = self.try_run(&["lookup", gun, tag], None)?;
        // Only ASCII blanks separate fields: a tag may hold Unicode spaces (U+2028 ...).
        let line = out.trim_matches(|c: char| c.is_ascii_whitespace());
        let parts = ascii_fields(line);
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
                let p = ascii_fields(l);
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

fn ascii_fields(line: &str) -> Vec<&str> {
    line.split(|c: char| c.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
        .collect()
}

fn hex_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `sha256:<hex>` of `bytes`, as notary reports a target's digest.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex_of(bytes))
}
