//! A real notary-server (and, for the `remote` flavour, a real notary-signer) on free loopback
//! ports with TLS from a throwaway [`TestCa`], and a [`NotaryCli`] wrapper around the real
//! `notary` publisher tool, so trust data in tests is exactly what Docker Content Trust writes.
//!
//! Flavours differ in who holds the server-managed keys (timestamp, and snapshot after
//! `key rotate -r`): `local` trust makes ed25519 keys, a signer with `key_algorithm: ecdsa`
//! makes P-256 keys (what Docker Hub has). Verification must handle both.
//!
//! `cli` drives the real notary CLI, `docker` asks the docker CLI what it trusts, `check`
//! runs trustgate's own verifier against a server and compares it with notary's answers.
// Each test binary uses a different part of this harness.
#![allow(unused_imports, unused_macros)]

mod check;
mod cli;
mod docker;

pub use check::*;
pub use cli::*;
pub use docker::*;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
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
