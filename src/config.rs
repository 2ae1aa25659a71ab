//! The configuration file (TOML), in two steps: the file is read into raw structs that
//! mirror it (`deny_unknown_fields`, so a misspelt key is an error, not a silent default),
//! then converted into a validated [`Config`] by `TryFrom`, which checks every field and
//! collects *all* problems, each naming the file, the field, and what was expected.
//!
//! ```toml
//! listen = ["0.0.0.0:5000"]            # one or more socket addresses
//! log_format = "json"                  # "text" (default) or "json"
//! policy = "/etc/trustgate/policy.toml" # omitted: the embedded default policy
//! state_dir = "/var/lib/trustgate"     # trust state (pinned roots, last versions)
//! default_upstream = "docker.io"       # omitted with a single upstream: that one
//!
//! [tls]                                # omitted: plain HTTP
//! cert = "server.crt"                  # PEM chain; relative paths are relative to this file
//! key = "server.key"
//!
//! [limits]
//! manifest_max_bytes = 4194304
//! max_connections = 1024
//! header_read_timeout = "10s"          # durations: "500ms", "10s", "2m", "1h"
//! idle_timeout = "90s"
//! shutdown_grace = "30s"
//!
//! [[upstream]]
//! name = "docker.io"                   # the registry host clients mean (ns=, path prefix)
//! url = "https://registry-1.docker.io"
//! ca_file = "/etc/ssl/private-ca.pem"  # extra CA on top of the system roots
//! connect_timeout = "10s"
//! request_timeout = "30s"              # until response headers arrive
//! allowed_realms = ["auth.docker.io"]  # token realms on other hosts that may get credentials
//! [upstream.credentials]
//! username = "me"
//! password_env = "DOCKERHUB_TOKEN"     # or password_file = "/run/secrets/hub"
//! ```

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::limits::Limits;
use crate::upstream::{ClientSettings, Credentials};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/trustgate";
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

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
    pub tls: Option<TlsFiles>,
    pub upstreams: Vec<UpstreamConfig>,
    /// Index into `upstreams` of the upstream used when a request names none.
    pub default_upstream: Option<usize>,
    pub limits: Limits,
    pub log_format: LogFormat,
    /// Policy file; `None` means the embedded default policy.
    pub policy: Option<PathBuf>,
    pub state_dir: PathBuf,
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

// ---- raw file structs ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Vec<String>>,
    log_format: Option<String>,
    policy: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    default_upstream: Option<String>,
    // Sections are kept as values and deserialized one by one, so one bad section does not
    // hide the problems of the others.
    tls: Option<toml::Value>,
    limits: Option<toml::Value>,
    upstream: Option<Vec<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    manifest_max_bytes: Option<u64>,
    max_connections: Option<usize>,
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    shutdown_grace: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    name: String,
    url: String,
    ca_file: Option<PathBuf>,
    credentials: Option<RawCredentials>,
    connect_timeout: Option<String>,
    request_timeout: Option<String>,
    #[serde(default)]
    allowed_realms: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredentials {
    username: String,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
}

/// The raw file together with where it came from, so validation can name the file and
/// resolve relative paths.
pub struct Sourced<'a> {
    raw: RawConfig,
    file: &'a str,
    base: Option<&'a Path>,
}

struct Collector {
    problems: Vec<Problem>,
}

impl Collector {
    fn push(&mut self, field: impl Into<String>, expected: impl Into<String>) {
        self.problems.push(Problem {
            field: field.into(),
            expected: expected.into(),
        });
    }

    fn section<T: DeserializeOwned>(&mut self, field: &str, v: toml::Value) -> Option<T> {
        match v.try_into::<T>() {
            Ok(t) => Some(t),
            Err(e) => {
                self.push(field, e.message().trim().to_string());
                None
            }
        }
    }

    fn duration(&mut self, field: &str, v: Option<&str>, default: Duration) -> Duration {
        match v {
            None => default,
            Some(s) => match parse_duration(s) {
                Some(d) if !d.is_zero() => d,
                _ => {
                    self.push(
                        field,
                        format!("a positive duration like \"500ms\", \"30s\", \"2m\", found {s:?}"),
                    );
                    default
                }
            },
        }
    }
}

fn parse(text: &str, file: &str, base: Option<&Path>) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let field = match e.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].lines().count().max(1);
                format!("line {line}")
            }
            None => "(file)".to_string(),
        };
        ConfigError {
            file: file.to_string(),
            problems: vec![Problem {
                field,
                expected: e.message().trim().to_string(),
            }],
        }
    })?;
    Config::try_from(Sourced { raw, file, base })
}

fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

impl<'a> TryFrom<Sourced<'a>> for Config {
    type Error = ConfigError;

    fn try_from(src: Sourced<'a>) -> Result<Config, ConfigError> {
        let Sourced { raw, file, base } = src;
        let mut c = Collector {
            problems: Vec::new(),
        };
        let resolve = |p: PathBuf| match base {
            Some(b) if p.is_relative() => b.join(p),
            _ => p,
        };

        let mut listen = Vec::new();
        match raw.listen {
            None => listen.push(SocketAddr::from(([127, 0, 0, 1], 5000))),
            Some(list) if list.is_empty() => c.push(
                "listen",
                "at least one socket address like \"0.0.0.0:5000\"",
            ),
            Some(list) => {
                for (i, a) in list.iter().enumerate() {
                    match a.parse::<SocketAddr>() {
                        Ok(s) => listen.push(s),
                        Err(_) => c.push(
                            format!("listen[{i}]"),
                            format!("a socket address like \"0.0.0.0:5000\", found {a:?}"),
                        ),
                    }
                }
            }
        }

        let log_format = match raw.log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                c.push(
                    "log_format",
                    format!("\"text\" or \"json\", found {other:?}"),
                );
                LogFormat::Text
            }
        };

        let tls = raw
            .tls
            .and_then(|v| c.section::<RawTls>("tls", v))
            .map(|t| TlsFiles {
                cert: resolve(t.cert),
                key: resolve(t.key),
            });
        if let Some(t) = &tls {
            for (field, p) in [("tls.cert", &t.cert), ("tls.key", &t.key)] {
                if !p.is_file() {
                    c.push(
                        field,
                        format!("a readable PEM file, {} does not exist", p.display()),
                    );
                }
            }
        }

        let defaults = Limits::default();
        let limits = match raw.limits.and_then(|v| c.section::<RawLimits>("limits", v)) {
            None => defaults,
            Some(l) => {
                let manifest_max_bytes = match l.manifest_max_bytes {
                    Some(0) => {
                        c.push("limits.manifest_max_bytes", "a positive number of bytes");
                        defaults.manifest_max_bytes
                    }
                    Some(n) => n,
                    None => defaults.manifest_max_bytes,
                };
                let max_connections = match l.max_connections {
                    Some(0) => {
                        c.push("limits.max_connections", "a positive number of connections");
                        defaults.max_connections
                    }
                    Some(n) => n,
                    None => defaults.max_connections,
                };
                Limits {
                    manifest_max_bytes,
                    max_connections,
                    header_read_timeout: c.duration(
                        "limits.header_read_timeout",
                        l.header_read_timeout.as_deref(),
                        defaults.header_read_timeout,
                    ),
                    idle_timeout: c.duration(
                        "limits.idle_timeout",
                        l.idle_timeout.as_deref(),
                        defaults.idle_timeout,
                    ),
                    shutdown_grace: c.duration(
                        "limits.shutdown_grace",
                        l.shutdown_grace.as_deref(),
                        defaults.shutdown_grace,
                    ),
                }
            }
        };

        let mut upstreams = Vec::new();
        let raw_upstreams = raw.upstream.unwrap_or_default();
        if raw_upstreams.is_empty() {
            c.push(
                "upstream",
                "at least one [[upstream]] table with name and url",
            );
        }
        let mut seen = HashSet::new();
        for (i, v) in raw_upstreams.into_iter().enumerate() {
            let at = format!("upstream[{i}]");
            let Some(u) = c.section::<RawUpstream>(&at, v) else {
                continue;
            };
            if u.name.is_empty()
                || u.name.contains('/')
                || u.name
                    .chars()
                    .any(|ch| ch.is_whitespace() || ch.is_control())
            {
                c.push(
                    format!("{at}.name"),
                    format!(
                        "a registry host name like \"docker.io\" or \"host:5000\", found {:?}",
                        u.name
                    ),
                );
            } else if !seen.insert(u.name.clone()) {
                c.push(
                    format!("{at}.name"),
                    format!("a unique name; {:?} is used twice", u.name),
                );
            }
            let url = match url::Url::parse(&u.url) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
                    if url.username() != "" || url.password().is_some() {
                        c.push(
                            format!("{at}.url"),
                            "a URL without user:password (use [upstream.credentials])",
                        );
                    }
                    Some(url)
                }
                _ => {
                    c.push(
                        format!("{at}.url"),
                        format!("an http:// or https:// URL, found {:?}", u.url),
                    );
                    None
                }
            };
            let ca_file = u.ca_file.map(&resolve);
            if let Some(p) = &ca_file {
                if !p.is_file() {
                    c.push(
                        format!("{at}.ca_file"),
                        format!("a readable PEM file, {} does not exist", p.display()),
                    );
                }
            }
            let credentials = u
                .credentials
                .and_then(|cr| credentials(&mut c, &at, cr, &resolve));
            let connect_timeout = c.duration(
                &format!("{at}.connect_timeout"),
                u.connect_timeout.as_deref(),
                DEFAULT_CONNECT_TIMEOUT,
            );
            let request_timeout = c.duration(
                &format!("{at}.request_timeout"),
                u.request_timeout.as_deref(),
                DEFAULT_REQUEST_TIMEOUT,
            );
            if let Some(url) = url {
                upstreams.push(UpstreamConfig {
                    name: u.name,
                    url,
                    ca_file,
                    credentials,
                    connect_timeout,
                    request_timeout,
                    allowed_realms: u.allowed_realms,
                });
            }
        }

        let default_upstream = match raw.default_upstream {
            Some(name) => {
                let found = upstreams.iter().position(|u| u.name == name);
                if found.is_none() {
                    c.push(
                        "default_upstream",
                        format!("the name of a configured [[upstream]], found {name:?}"),
                    );
                }
                found
            }
            None if upstreams.len() == 1 => Some(0),
            None => None,
        };

        if !c.problems.is_empty() {
            return Err(ConfigError {
                file: file.to_string(),
                problems: c.problems,
            });
        }
        Ok(Config {
            listen,
            tls,
            upstreams,
            default_upstream,
            limits,
            log_format,
            policy: raw.policy.map(&resolve),
            state_dir: raw
                .state_dir
                .map(&resolve)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
        })
    }
}

fn credentials(
    c: &mut Collector,
    at: &str,
    cr: RawCredentials,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
) -> Option<Credentials> {
    let field = format!("{at}.credentials");
    let password = match (cr.password_env, cr.password_file) {
        (Some(var), None) => match std::env::var(&var) {
            Ok(p) if !p.is_empty() => Some(p),
            _ => {
                c.push(
                    format!("{field}.password_env"),
                    format!("the name of a set, non-empty environment variable; {var} is not set"),
                );
                None
            }
        },
        (None, Some(path)) => {
            let path = resolve(path);
            match std::fs::read_to_string(&path) {
                Ok(p) if !p.trim_end_matches(['\r', '\n']).is_empty() => {
                    Some(p.trim_end_matches(['\r', '\n']).to_string())
                }
                // Never echo file content: it may be a secret.
                _ => {
                    c.push(
                        format!("{field}.password_file"),
                        format!("a readable, non-empty file; {} is not", path.display()),
                    );
                    None
                }
            }
        }
        _ => {
            c.push(
                field.clone(),
                "exactly one of password_env or password_file next to username",
            );
            None
        }
    };
    password.map(|password| Credentials {
        username: cr.username,
        password,
    })
}

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
