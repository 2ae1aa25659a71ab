//! Raw file structs (mirroring the TOML, `deny_unknown_fields`) and their conversion into a
//! validated [`Config`], collecting every problem.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::client_auth::{self, RawClientAuth};
use super::{
    CacheConfig, Config, ConfigError, LogFormat, Problem, TlsFiles, UpstreamConfig,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_STATE_DIR,
};
use crate::limits::Limits;
use crate::upstream::Credentials;

// ---- raw file structs ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Vec<String>>,
    ops_listen: Option<Vec<String>>,
    log_format: Option<String>,
    policy: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    default_upstream: Option<String>,
    // Sections are kept as values and deserialized one by one, so one bad section does not
    // hide the problems of the others.
    tls: Option<toml::Value>,
    client_auth: Option<toml::Value>,
    limits: Option<toml::Value>,
    cache: Option<toml::Value>,
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
    max_connections_per_peer: Option<usize>,
    max_concurrent_streams: Option<u32>,
    max_buffered_bytes: Option<u64>,
    max_header_bytes: Option<usize>,
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
    shutdown_grace: Option<String>,
    max_trust_updates: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    enabled: Option<bool>,
    max_bytes: Option<u64>,
    memory_max_bytes: Option<u64>,
    min_free_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    name: String,
    path: Option<String>,
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

pub(super) struct Collector {
    problems: Vec<Problem>,
}

impl Collector {
    pub(super) fn push(&mut self, field: impl Into<String>, expected: impl Into<String>) {
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

pub(super) fn parse(text: &str, file: &str, base: Option<&Path>) -> Result<Config, ConfigError> {
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

pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
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

        let mut ops_listen = Vec::new();
        for (i, a) in raw.ops_listen.iter().flatten().enumerate() {
            match a.parse::<SocketAddr>() {
                Ok(s) if listen.contains(&s) => c.push(
                    format!("ops_listen[{i}]"),
                    format!("an address other than the registry listener's, found {a:?}"),
                ),
                Ok(s) => ops_listen.push(s),
                Err(_) => c.push(
                    format!("ops_listen[{i}]"),
                    format!("a socket address like \"127.0.0.1:9102\", found {a:?}"),
                ),
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
                let max_connections_per_peer = match l.max_connections_per_peer {
                    Some(0) => {
                        c.push(
                            "limits.max_connections_per_peer",
                            "a positive number of connections",
                        );
                        defaults.max_connections_per_peer
                    }
                    Some(n) => n,
                    None => defaults.max_connections_per_peer,
                };
                let max_concurrent_streams = match l.max_concurrent_streams {
                    Some(0) => {
                        c.push(
                            "limits.max_concurrent_streams",
                            "a positive number of streams",
                        );
                        defaults.max_concurrent_streams
                    }
                    Some(n) => n,
                    None => defaults.max_concurrent_streams,
                };
                let max_buffered_bytes = match l.max_buffered_bytes {
                    Some(n) if n < manifest_max_bytes => {
                        c.push(
                            "limits.max_buffered_bytes",
                            format!(
                                "at least limits.manifest_max_bytes ({manifest_max_bytes}), found {n}"
                            ),
                        );
                        defaults.max_buffered_bytes
                    }
                    Some(n) => n,
                    None => defaults.max_buffered_bytes.max(manifest_max_bytes),
                };
                let max_header_bytes = match l.max_header_bytes {
                    Some(n) if n < 8192 => {
                        c.push(
                            "limits.max_header_bytes",
                            format!("at least 8192 bytes, found {n}"),
                        );
                        defaults.max_header_bytes
                    }
                    Some(n) => n,
                    None => defaults.max_header_bytes,
                };
                let max_trust_updates = match l.max_trust_updates {
                    Some(0) => {
                        c.push(
                            "limits.max_trust_updates",
                            "a positive number of concurrent trust updates",
                        );
                        defaults.max_trust_updates
                    }
                    Some(n) => n,
                    None => defaults.max_trust_updates,
                };
                Limits {
                    max_trust_updates,
                    manifest_max_bytes,
                    max_connections,
                    max_connections_per_peer,
                    max_concurrent_streams,
                    max_buffered_bytes,
                    max_header_bytes,
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

        let cache_defaults = CacheConfig::default();
        let cache = match raw.cache.and_then(|v| c.section::<RawCache>("cache", v)) {
            None => cache_defaults,
            Some(rc) => CacheConfig {
                enabled: rc.enabled.unwrap_or(cache_defaults.enabled),
                max_bytes: match rc.max_bytes {
                    Some(0) => {
                        c.push(
                            "cache.max_bytes",
                            "a positive number of bytes (to turn the cache off, enabled = false)",
                        );
                        cache_defaults.max_bytes
                    }
                    Some(n) => n,
                    None => cache_defaults.max_bytes,
                },
                memory_max_bytes: match rc.memory_max_bytes {
                    Some(0) => {
                        c.push("cache.memory_max_bytes", "a positive number of bytes");
                        cache_defaults.memory_max_bytes
                    }
                    Some(n) => n,
                    None => cache_defaults.memory_max_bytes,
                },
                min_free_bytes: rc.min_free_bytes.unwrap_or(cache_defaults.min_free_bytes),
            },
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
            // `path`: one repository path component (distribution's grammar, so every client
            // can write it), used by no other upstream as a name or path.
            if let Some(p) = &u.path {
                let component =
                    !p.contains('/') && crate::registry::reference::RepoName::parse(p).is_ok();
                if !component {
                    c.push(
                        format!("{at}.path"),
                        format!("one repository path component like \"corp\" ([a-z0-9] separated by '.', '_', '__' or '-'), found {p:?}"),
                    );
                } else if !seen.insert(p.clone()) {
                    c.push(
                        format!("{at}.path"),
                        format!(
                            "a prefix no other upstream uses as its name or path; {p:?} is taken"
                        ),
                    );
                }
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
            // Basic credentials are sent on every request once challenged: over http:// off
            // this machine they travel in clear text (PROXY-REVIEW D18; the policy's rule for
            // trust servers is the same).
            if let (Some(_), Some(url)) = (&credentials, &url) {
                if url.scheme() == "http" && !crate::upstream::is_loopback(url) {
                    c.push(
                        format!("{at}.credentials"),
                        "an https:// upstream url (or a loopback one): credentials over http:// \
                         would travel in clear text",
                    );
                }
            }
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
                    path: u.path,
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

        let client_auth = raw
            .client_auth
            .and_then(|v| c.section::<RawClientAuth>("client_auth", v))
            .and_then(|r| client_auth::parse(&mut c, r, &resolve, tls.is_some()));
        client_auth::check_exposure(
            &mut c,
            &listen,
            upstreams.iter().any(|u| u.credentials.is_some()),
            client_auth.as_ref(),
        );

        if !c.problems.is_empty() {
            return Err(ConfigError {
                file: file.to_string(),
                problems: c.problems,
            });
        }
        Ok(Config {
            listen,
            ops_listen,
            tls,
            client_auth,
            upstreams,
            default_upstream,
            limits,
            log_format,
            policy: raw.policy.map(&resolve),
            state_dir: raw
                .state_dir
                .map(&resolve)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            cache,
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
