//! `[client_auth]`: parsed and checked with the rest of the file, the htpasswd and token files
//! read now, so a broken one stops the start instead of refusing every pull later.
//!
//! ```toml
//! [client_auth]
//! client_ca = "clients-ca.pem"   # mutual TLS (needs [tls])
//! htpasswd = "htpasswd"          # HTTP Basic, bcrypt entries (htpasswd -B)
//! tokens = "tokens"              # bearer tokens: NAME sha256:HEX per line
//! # anonymous = true             # instead of the above: anyone who reaches trustgate pulls
//!
//! [[client_auth.access]]          # optional: who may use which repositories
//! identities = ["user:alice", "token:ci"]
//! scopes = ["registry.corp/team-a/**"]
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::clientauth::access::{AccessRule, IdentityPattern};
use crate::clientauth::{ClientAuth, Htpasswd, TokenSet};
use crate::policy::ScopePattern;

use super::validate::Collector;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClientAuth {
    client_ca: Option<PathBuf>,
    htpasswd: Option<PathBuf>,
    tokens: Option<PathBuf>,
    anonymous: Option<bool>,
    access: Option<Vec<RawAccess>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccess {
    identities: Vec<String>,
    scopes: Vec<String>,
}

pub(super) fn parse(
    c: &mut Collector,
    raw: RawClientAuth,
    resolve: &dyn Fn(PathBuf) -> PathBuf,
    has_tls: bool,
) -> Option<ClientAuth> {
    let anonymous = raw.anonymous.unwrap_or(false);
    let client_ca = raw.client_ca.map(resolve);
    if let Some(p) = &client_ca {
        if !has_tls {
            c.push(
                "client_auth.client_ca",
                "a [tls] section as well: client certificates are checked in the TLS handshake",
            );
        }
        if !p.is_file() {
            c.push(
                "client_auth.client_ca",
                format!("a readable PEM file, {} does not exist", p.display()),
            );
        }
    }
    let htpasswd = raw
        .htpasswd
        .map(resolve)
        .and_then(|p| read(c, "client_auth.htpasswd", &p, Htpasswd::parse));
    let tokens = raw
        .tokens
        .map(resolve)
        .and_then(|p| read(c, "client_auth.tokens", &p, TokenSet::parse));
    let any_method = client_ca.is_some() || htpasswd.is_some() || tokens.is_some();
    if anonymous && any_method {
        c.push(
            "client_auth.anonymous",
            "anonymous = true alone, or authentication methods without it, not both",
        );
    }
    if !anonymous && !any_method {
        c.push(
            "client_auth",
            "client_ca, htpasswd or tokens (or anonymous = true to let anyone pull)",
        );
        return None;
    }
    let access = parse_access(c, raw.access.unwrap_or_default());
    if anonymous && !access.is_empty() {
        c.push(
            "client_auth.access",
            "authentication methods: access entries name authenticated identities, and \
             anonymous = true authenticates nobody",
        );
    }
    Some(ClientAuth::new(client_ca, htpasswd, tokens, anonymous).with_access(access))
}

/// Every entry is checked, and every bad identity or scope reported by its index.
fn parse_access(c: &mut Collector, raw: Vec<RawAccess>) -> Vec<AccessRule> {
    let mut rules = Vec::new();
    for (i, entry) in raw.into_iter().enumerate() {
        let at = format!("client_auth.access[{i}]");
        let mut ok = true;
        if entry.identities.is_empty() {
            c.push(format!("{at}.identities"), "at least one identity");
            ok = false;
        }
        if entry.scopes.is_empty() {
            c.push(format!("{at}.scopes"), "at least one scope");
            ok = false;
        }
        let identities = parse_each(
            c,
            &format!("{at}.identities"),
            &entry.identities,
            IdentityPattern::parse,
        );
        let scopes = parse_each(
            c,
            &format!("{at}.scopes"),
            &entry.scopes,
            ScopePattern::parse,
        );
        let (Some(identities), Some(scopes)) = (identities, scopes) else {
            continue;
        };
        if ok {
            rules.push(AccessRule { identities, scopes });
        }
    }
    rules
}

/// Parses every item, reporting each bad one as `field[index]`; `None` if any was bad.
fn parse_each<T>(
    c: &mut Collector,
    field: &str,
    items: &[String],
    parse: impl Fn(&str) -> Result<T, String>,
) -> Option<Vec<T>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (j, text) in items.iter().enumerate() {
        match parse(text) {
            Ok(p) => out.push(p),
            Err(e) => {
                c.push(format!("{field}[{j}]"), e);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn read<T>(
    c: &mut Collector,
    field: &str,
    path: &Path,
    parse: fn(&str) -> Result<T, String>,
) -> Option<T> {
    match std::fs::read_to_string(path) {
        Err(e) => {
            c.push(field, format!("a readable file, {}: {e}", path.display()));
            None
        }
        Ok(text) => match parse(&text) {
            Ok(t) => Some(t),
            Err(e) => {
                c.push(field, format!("{}: {e}", path.display()));
                None
            }
        },
    }
}

/// Upstream credentials lend trustgate's access to whoever can reach it: with a listener off
/// loopback and no `[client_auth]`, the start is refused until the operator says so.
pub(super) fn check_exposure(
    c: &mut Collector,
    listen: &[SocketAddr],
    any_upstream_credentials: bool,
    client_auth: Option<&ClientAuth>,
) {
    if client_auth.is_some() || !any_upstream_credentials {
        return;
    }
    if let Some(open) = listen.iter().find(|a| !a.ip().is_loopback()) {
        c.push(
            "client_auth",
            format!(
                "a [client_auth] section: upstream credentials are configured and {open} is not \
                 a loopback address, so anyone who reaches it would pull with them (set \
                 client_auth.anonymous = true to allow that knowingly)"
            ),
        );
    }
}
