//! The parts of loading that reach outside the file: trust servers (with credentials from the
//! environment or a secret file) and trust pinning (PEM certificates read and parsed now, so a
//! missing or corrupt file fails the load instead of the first pull).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::upstream::Credentials;

use super::error::PolicyErrorKind;
use super::load::{Builder, PINNING_KEYS, SERVER_KEYS};
use super::model::{PinnedCert, TrustPinning, TrustServer};
use super::raw::{Field, TableReader};

const MIN_TRUST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
const MAX_TRUST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

impl Builder<'_> {
    pub(super) fn trust_servers(
        &mut self,
        top: &TableReader<'_>,
    ) -> BTreeMap<String, Arc<TrustServer>> {
        let mut out = BTreeMap::new();
        let Some(f) = top.get("trust_servers") else {
            return out;
        };
        let Some(map) = self.ctx.table(f, None) else {
            return out;
        };
        for entry in &map.fields {
            let Some(t) = self.ctx.table(entry, Some(SERVER_KEYS)) else {
                continue;
            };
            if let Some(s) = self.trust_server(entry.key, &t) {
                out.insert(entry.key.to_string(), Arc::new(s));
            }
        }
        out
    }

    pub(super) fn trust_server(&mut self, name: &str, t: &TableReader<'_>) -> Option<TrustServer> {
        let url = match t.get("url") {
            None => {
                let expected = "an http:// or https:// URL of a Notary server".into();
                self.ctx.push(
                    t.line,
                    &t.child_path("url"),
                    PolicyErrorKind::Missing { expected },
                );
                None
            }
            Some(f) => self
                .ctx
                .string(f)
                .and_then(|s| match url::Url::parse(&s.value) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                        Some(u)
                    }
                    _ => {
                        self.ctx
                            .invalid(f, "an http:// or https:// URL", format!("{:?}", s.value));
                        None
                    }
                }),
        };
        let ca_file = t
            .get("ca_file")
            .and_then(|f| self.pem_file(f))
            .map(|(p, _)| p);
        let credentials = self.credentials(t, url.as_ref());
        let trust_timeout = match t.get("trust_timeout") {
            None => Some(crate::trust::limits::DEFAULT_UPDATE_DEADLINE),
            Some(f) => self.trust_timeout(f),
        };
        Some(TrustServer {
            name: name.to_string(),
            url: url?,
            ca_file,
            credentials: credentials.ok()?,
            trust_timeout: trust_timeout?,
        })
    }

    /// `trust_timeout = "30s"`: the deadline for one whole trust update against this server
    /// (every metadata file of one GUN), 1 s to 10 min.
    fn trust_timeout(&mut self, f: &Field<'_>) -> Option<std::time::Duration> {
        let s = self.ctx.string(f)?;
        match crate::config::parse_duration(&s.value) {
            Some(d) if d >= MIN_TRUST_TIMEOUT && d <= MAX_TRUST_TIMEOUT => Some(d),
            _ => {
                self.ctx.invalid(
                    f,
                    "a duration from \"1s\" to \"10m\" (units ms, s, m, h), e.g. \"30s\"",
                    format!("{:?}", s.value),
                );
                None
            }
        }
    }

    /// `Err(())` when an error was recorded; `Ok(None)` when no credentials are configured.
    pub(super) fn credentials(
        &mut self,
        t: &TableReader<'_>,
        url: Option<&url::Url>,
    ) -> Result<Option<Credentials>, ()> {
        let username = t.get("username").map(|f| (f, self.ctx.string(f)));
        let env = t.get("password_env");
        let file = t.get("password_file");
        let Some((ufield, username)) = username else {
            for f in [env, file].into_iter().flatten() {
                let reason = "a password needs a `username`".to_string();
                self.ctx
                    .push(f.line, &f.path, PolicyErrorKind::Conflict { reason });
            }
            return if env.is_some() || file.is_some() {
                Err(())
            } else {
                Ok(None)
            };
        };
        let password = match (env, file) {
            (Some(e), Some(_)) => {
                let reason = "give `password_env` or `password_file`, not both".to_string();
                self.ctx
                    .push(e.line, &e.path, PolicyErrorKind::Conflict { reason });
                None
            }
            (None, None) => {
                let expected = "`password_env` or `password_file` next to `username`".into();
                self.ctx.push(
                    ufield.line,
                    &t.child_path("password_env"),
                    PolicyErrorKind::Missing { expected },
                );
                None
            }
            (Some(e), None) => {
                self.ctx
                    .string(e)
                    .and_then(|name| match std::env::var(&name.value) {
                        Ok(v) if !v.is_empty() => Some(v),
                        _ => {
                            let found = format!("{} is unset or empty", name.value);
                            self.ctx.invalid(e, "a set environment variable", found);
                            None
                        }
                    })
            }
            (None, Some(f)) => self.ctx.string(f).and_then(|p| {
                let path = self.resolve(&p.value);
                match std::fs::read_to_string(&path) {
                    Ok(v) if !v.trim_end_matches(['\r', '\n']).is_empty() => {
                        Some(v.trim_end_matches(['\r', '\n']).to_string())
                    }
                    Ok(_) => {
                        self.file_error(f, &path, "is empty".into());
                        None
                    }
                    Err(e) => {
                        self.file_error(f, &path, e.to_string());
                        None
                    }
                }
            }),
        };
        // Basic credentials over plain HTTP would travel in clear text beyond this machine.
        if let Some(u) = url {
            let loopback = match u.host() {
                Some(url::Host::Domain(d)) => d == "localhost",
                Some(url::Host::Ipv4(a)) => IpAddr::V4(a).is_loopback(),
                Some(url::Host::Ipv6(a)) => IpAddr::V6(a).is_loopback(),
                None => false,
            };
            if u.scheme() == "http" && !loopback {
                let reason = "credentials need an https:// trust server URL (or a loopback one)";
                let reason = reason.to_string();
                self.ctx.push(
                    ufield.line,
                    &ufield.path,
                    PolicyErrorKind::Conflict { reason },
                );
                return Err(());
            }
        }
        match (username, password) {
            (Some(u), Some(p)) => Ok(Some(Credentials {
                username: u.value,
                password: p,
            })),
            _ => Err(()),
        }
    }

    pub(super) fn pinning(&mut self, f: &Field<'_>) -> Option<TrustPinning> {
        let t = self.ctx.table(f, Some(PINNING_KEYS))?;
        let tofu = match t.get("tofu") {
            None => Some(true),
            Some(f) => self.ctx.bool(f).map(|b| b.value),
        };
        let ca = match t.get("ca") {
            None => Some(None),
            Some(f) => self.pem_file(f).map(|(_, certs)| Some(certs)),
        };
        let mut root_certs = Some(Vec::new());
        if let Some(f) = t.get("root_certs") {
            match self.ctx.table(f, None) {
                None => root_certs = None,
                Some(map) => {
                    for entry in &map.fields {
                        let key = entry.key;
                        let star = key.find('*');
                        if key.is_empty() || star.is_some_and(|i| i + 1 != key.len()) {
                            let expected = "a GUN, or a GUN prefix ending in `*`";
                            self.ctx.invalid(entry, expected, format!("{key:?}"));
                            root_certs = None;
                            continue;
                        }
                        let certs = self.pem_files(entry);
                        match (certs, root_certs.as_mut()) {
                            (Some(c), Some(rc)) => rc.push((key.to_string(), c)),
                            _ => root_certs = None,
                        }
                    }
                }
            }
        }
        Some(TrustPinning {
            root_certs: root_certs?,
            ca: ca?,
            tofu: tofu?,
        })
    }

    pub(super) fn pem_files(&mut self, f: &Field<'_>) -> Option<Vec<PinnedCert>> {
        let paths = self.ctx.strings(f)?;
        if paths.is_empty() {
            self.ctx
                .invalid(f, "at least one PEM file", "an empty array");
            return None;
        }
        let mut out = Some(Vec::new());
        for p in paths {
            let elem = Field {
                key: f.key,
                item: f.item,
                path: p.field.clone(),
                line: p.line,
            };
            match (self.read_pem(&elem, &p.value), out.as_mut()) {
                (Some((_, certs)), Some(o)) => o.extend(certs),
                _ => out = None,
            }
        }
        out
    }

    pub(super) fn pem_file(&mut self, f: &Field<'_>) -> Option<(PathBuf, Vec<PinnedCert>)> {
        let s = self.ctx.string(f)?;
        self.read_pem(f, &s.value)
    }

    /// Reads and parses a PEM file now, so that a missing or corrupt file fails the load
    /// instead of the first pull.
    pub(super) fn read_pem(
        &mut self,
        f: &Field<'_>,
        raw_path: &str,
    ) -> Option<(PathBuf, Vec<PinnedCert>)> {
        let path = self.resolve(raw_path);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                self.file_error(f, &path, e.to_string());
                return None;
            }
        };
        let mut certs = Vec::new();
        for pem in x509_parser::pem::Pem::iter_from_buffer(&bytes) {
            let reason = match pem {
                Err(e) => format!("is not valid PEM: {e}"),
                Ok(p) if p.label != "CERTIFICATE" => {
                    format!(
                        "holds a {:?} block; only CERTIFICATE blocks are accepted",
                        p.label
                    )
                }
                Ok(p) => match p.parse_x509() {
                    Ok(_) => {
                        certs.push(PinnedCert {
                            path: path.clone(),
                            der: p.contents,
                        });
                        continue;
                    }
                    Err(e) => format!("holds a certificate that does not parse: {e}"),
                },
            };
            self.file_error(f, &path, reason);
            return None;
        }
        if certs.is_empty() {
            self.file_error(f, &path, "holds no PEM certificate".into());
            return None;
        }
        Some((path, certs))
    }

    pub(super) fn file_error(&mut self, f: &Field<'_>, path: &Path, reason: String) {
        let path = path.display().to_string();
        self.ctx.push(
            f.line,
            &f.path,
            PolicyErrorKind::ReferencedFile { path, reason },
        );
    }

    pub(super) fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}
