//! The configuration file (TOML), in two steps: the file is read into raw structs that
//! mirror it (`deny_unknown_fields`, so a misspelt key is an error, not a silent default),
//! then converted into a validated [`Config`] by `TryFrom`, which checks every field and
//! collects *all* problems, each naming the file, the field, and what was expected.
//!
//! ```toml
//! listen = ["0.0.0.0:5000"]            # one or more socket addresses
//! ops_listen = ["127.0.0.1:9102"]      # /healthz, /readyz, /metrics on their own listener
//!                                      # (and /metrics no longer on `listen`)
//! log_format = "json"                  # "text" (default) or "json"
//! policy = "/etc/trustgate/policy.toml" # omitted: the embedded default policy
//! state_dir = "/var/lib/trustgate"     # trust state (pinned roots, last versions) and the
//!                                      # content cache (<state_dir>/content)
//! default_upstream = "docker.io"       # omitted with a single upstream: that one
//!
//! [tls]                                # omitted: plain HTTP
//! cert = "server.crt"                  # PEM chain; relative paths are relative to this file
//! key = "server.key"
//!
//! [limits]
//! manifest_max_bytes = 4194304
//! max_connections = 1024               # across every listener
//! max_connections_per_peer = 256       # from one client address
//! max_concurrent_streams = 100         # per HTTP/2 connection
//! max_buffered_bytes = 268435456       # manifest bytes being read from upstreams at once
//! max_header_bytes = 65536              # request line + headers, at least 8192
//! header_read_timeout = "10s"          # durations: "500ms", "10s", "2m", "1h"
//! idle_timeout = "90s"                # no request in flight this long: connection closed
//! shutdown_grace = "30s"
//! max_trust_updates = 32               # Notary updates at once, every trust server together
//!
//! [cache]                              # verified manifests and blobs on disk, by digest
//! enabled = true                       # default true; false: stream everything from upstream
//! max_bytes = 10737418240              # default 10 GiB; least recently used files go first
//!                                      # (fills in progress count: their length is reserved)
//! min_free_bytes = 67108864            # default 64 MiB left free on state_dir's volume,
//!                                      # so a filling cache never starves the trust state
//! memory_max_bytes = 268435456         # verified manifests in memory (default 256 MiB)
//!
//! [[upstream]]
//! name = "docker.io"                   # the registry host clients mean (ns=, path prefix)
//! url = "https://registry-1.docker.io"
//! path = "hub"                         # optional: /v2/hub/<repo>/... routes here too
//! ca_file = "/etc/ssl/private-ca.pem"  # extra CA on top of the system roots
//! connect_timeout = "10s"
//! request_timeout = "30s"              # until response headers arrive
//! allowed_realms = ["auth.docker.io"]  # token realms on other hosts that may get credentials
//! [upstream.credentials]
//! username = "me"
//! password_env = "DOCKERHUB_TOKEN"     # or password_file = "/run/secrets/hub"
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::limits::Limits;
use crate::upstream::{ClientSettings, Credentials};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/trustgate";
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 10 * 1024 * 1024 * 1024;

/// The on-disk content cache (`[cache]`): verified manifests and blobs under
/// `<state_dir>/content`, served without the upstream (content addressed data cannot be stale),
/// which is what lets an air-gapped mirror keep serving what it has already pulled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    pub enabled: bool,
    /// Total bytes of cached content; least recently used entries are evicted beyond it.
    pub max_bytes: u64,
    /// Bytes of verified manifests kept in memory (the hot layer above the disk store).
    pub memory_max_bytes: u64,
    /// Free bytes the cache always leaves on `state_dir`'s filesystem: a blob whose fill would
    /// go below this is streamed (verified) but not cached, so trust-state writes on the same
    /// volume never fail because the content cache filled it (PROXY-REVIEW D1).
    pub min_free_bytes: u64,
}

pub const DEFAULT_CACHE_MIN_FREE_BYTES: u64 = 64 * 1024 * 1024;

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            max_bytes: DEFAULT_CACHE_MAX_BYTES,
            memory_max_bytes: 256 * 1024 * 1024,
            min_free_bytes: DEFAULT_CACHE_MIN_FREE_BYTES,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    /// A path prefix that selects this upstream besides its name (`/v2/<path>/<repo>/...`):
    /// one repository path component, for clients that cannot put the name in a path.
    pub path: Option<String>,
    pub url: url::Url,
    pub ca_file: Option<PathBuf>,
    pub credentials: Option<Credentials>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub allowed_realms: Vec<String>,
}

impl UpstreamConfig {
    pub fn client_settings(&self) -> ClientSettings {
        ClientSettings {
            name: self.name.clone(),
            base_url: self.url.clone(),
            ca_file: self.ca_file.clone(),
            credentials: self.credentials.clone(),
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            allowed_realms: self.allowed_realms.clone(),
        }
    }
}

/// A validated configuration. Build one with [`Config::load`], [`Config::from_toml_str`] or
/// [`Config::embedded_default`].
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    /// Listeners for `/healthz`, `/readyz` and `/metrics` only. When set, the registry
    /// listeners no longer answer `/metrics`.
    pub ops_listen: Vec<SocketAddr>,
    pub tls: Option<TlsFiles>,
    /// Who may pull (`[client_auth]`); `None`: anyone who reaches a listener.
    pub client_auth: Option<crate::clientauth::ClientAuth>,
    pub upstreams: Vec<UpstreamConfig>,
    /// Index into `upstreams` of the upstream used when a request names none.
    pub default_upstream: Option<usize>,
    pub limits: Limits,
    pub log_format: LogFormat,
    /// Policy file; `None` means the embedded default policy.
    pub policy: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub cache: CacheConfig,
}

/// One thing wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the field, e.g. `upstream[1].url`.
    pub field: String,
    /// What was expected, and what was found when that helps.
    pub expected: String,
}

/// Everything wrong with one configuration file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}: {}", self.file, p.field, p.expected)?;
        }
        Ok(())
    }
}

impl Config {
    /// The configuration used when `trustgate serve` gets no `--config`:
    ///
    /// ```toml
    /// listen = ["127.0.0.1:5000"]
    /// log_format = "text"
    /// state_dir = "/var/lib/trustgate"
    /// [[upstream]]
    /// name = "127.0.0.1:5001"
    /// url = "http://127.0.0.1:5001"
    /// ```
    ///
    /// i.e. a plain-HTTP proxy on loopback port 5000 for a local registry on port 5001, which
    /// is also the default upstream; the embedded default policy; default [`Limits`].
    pub fn embedded_default() -> Config {
        Config::from_toml_str(EMBEDDED_DEFAULT, "<embedded default>")
            .unwrap_or_else(unreachable_default)
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            problems: vec![Problem {
                field: "(file)".into(),
                expected: format!("a readable TOML file ({e})"),
            }],
        })?;
        let base = path.parent().map(Path::to_path_buf);
        parse(&text, &file, base.as_deref())
    }

    /// Parses TOML text; `origin` names it in messages. Relative paths stay as written.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        parse(text, origin, None)
    }
}

pub const EMBEDDED_DEFAULT: &str = r#"
listen = ["127.0.0.1:5000"]
log_format = "text"
state_dir = "/var/lib/trustgate"
[[upstream]]
name = "127.0.0.1:5001"
url = "http://127.0.0.1:5001"
"#;

// The embedded text is fixed and covered by a unit test; this keeps the signature infallible
// without `expect` while still pointing at the cause if someone breaks it.
fn unreachable_default(e: ConfigError) -> Config {
    panic!("the embedded default configuration is invalid: {e}")
}

mod client_auth;
mod validate;

use validate::parse;
pub(crate) use validate::parse_duration;
pub use validate::Sourced;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid_and_documented() {
        let c = Config::embedded_default();
        assert_eq!(c.listen, vec!["127.0.0.1:5000".parse().unwrap()]);
        assert_eq!(c.upstreams.len(), 1);
        assert_eq!(c.upstreams[0].name, "127.0.0.1:5001");
        assert_eq!(c.upstreams[0].url.as_str(), "http://127.0.0.1:5001/");
        assert_eq!(c.default_upstream, Some(0));
        assert_eq!(c.limits, Limits::default());
        assert!(c.policy.is_none());
        assert_eq!(c.cache, CacheConfig::default());
    }

    #[test]
    fn cache_section_is_validated() {
        let c = Config::from_toml_str(
            "[cache]\nenabled = false\nmax_bytes = 1048576\n[[upstream]]\nname = \"a\"\nurl = \"http://a\"\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(
            c.cache,
            CacheConfig {
                enabled: false,
                max_bytes: 1 << 20,
                memory_max_bytes: CacheConfig::default().memory_max_bytes,
                min_free_bytes: DEFAULT_CACHE_MIN_FREE_BYTES,
            }
        );
        let p =
            problems("[cache]\nmax_bytes = 0\n[[upstream]]\nname = \"a\"\nurl = \"http://a\"\n");
        assert_eq!(p, vec!["cache.max_bytes"]);
        let e = Config::from_toml_str(
            "[cache]\nenable = true\n[[upstream]]\nname = \"a\"\nurl = \"http://a\"\n",
            "f.toml",
        )
        .unwrap_err();
        assert_eq!(e.problems[0].field, "cache");
        assert!(e.to_string().starts_with("f.toml: cache: "), "{e}");
        assert!(e.to_string().contains("enable"), "{e}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("2"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("1d"), None);
    }

    fn problems(text: &str) -> Vec<String> {
        match Config::from_toml_str(text, "t.toml") {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.problems.iter().map(|p| p.field.clone()).collect(),
        }
    }

    #[test]
    fn all_problems_are_collected() {
        let p = problems(
            r#"
listen = ["nope"]
log_format = "xml"
default_upstream = "missing"
[limits]
manifest_max_bytes = 0
idle_timeout = "soon"
[[upstream]]
name = "a"
url = "ftp://x"
[[upstream]]
name = "a"
url = "http://y"
request_timeout = "0s"
[upstream.credentials]
username = "u"
"#,
        );
        for f in [
            "listen[0]",
            "log_format",
            "default_upstream",
            "limits.manifest_max_bytes",
            "limits.idle_timeout",
            "upstream[0].url",
            "upstream[1].name",
            "upstream[1].request_timeout",
            "upstream[1].credentials",
        ] {
            assert!(p.contains(&f.to_string()), "{f} missing from {p:?}");
        }
    }

    #[test]
    fn unknown_keys_are_errors() {
        let p = problems("[[upstream]]\nname = \"a\"\nurl = \"http://a\"\nurll = \"x\"\n");
        assert_eq!(p, vec!["upstream[0]"]);
        let e = Config::from_toml_str(
            "[[upstream]]\nname = \"a\"\nurl = \"http://a\"\nurll = 1\n",
            "f.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("urll"), "{e}");
        let p = problems("lissen = []\n");
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn missing_password_env_is_named_without_the_value() {
        let e = Config::from_toml_str(
            "[[upstream]]\nname=\"a\"\nurl=\"http://a\"\n[upstream.credentials]\nusername=\"u\"\npassword_env=\"TRUSTGATE_TEST_UNSET_VAR\"\n",
            "f.toml",
        )
        .unwrap_err();
        assert_eq!(e.problems[0].field, "upstream[0].credentials.password_env");
    }
}
