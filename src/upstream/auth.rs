//! `WWW-Authenticate` challenges (RFC 7235 §2.1, §4.1) and the rule that decides which token
//! realms may see the configured credentials. Pure: no I/O, no clock.

use std::fmt;

use url::{Host, Url};

/// One challenge from a `WWW-Authenticate` header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Docker token auth (distribution `docs/spec/auth/token.md`).
    Bearer(BearerChallenge),
    Basic {
        realm: Option<String>,
    },
    /// A scheme we do not speak (Digest, Negotiate, ...): kept so callers can say so.
    Other {
        scheme: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    pub realm: String,
    pub service: Option<String>,
    pub scope: Option<String>,
    /// `error="insufficient_scope"` and friends (RFC 6750 §3).
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("empty challenge")]
    Empty,
    #[error("unterminated quoted string at byte {at}")]
    UnterminatedQuote { at: usize },
    #[error("expected a token at byte {at}")]
    ExpectedToken { at: usize },
    #[error("Bearer challenge without a realm")]
    BearerWithoutRealm,
}

/// Parses every challenge in one header value, e.g.
/// `Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull"`.
/// A value can carry several challenges separated by commas (RFC 7235 §4.1), so a comma ends a
/// parameter and a following `scheme` without `=` starts the next challenge.
pub fn parse_challenges(value: &str) -> Result<Vec<Challenge>, ChallengeError> {
    let mut p = Parser {
        s: value.as_bytes(),
        text: value,
        pos: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip(|c| c == b' ' || c == b'\t' || c == b',');
        if p.at_end() {
            break;
        }
        let scheme = p.token()?;
        let mut params: Vec<(String, String)> = Vec::new();
        p.skip_ws();
        if !p.at_end() && p.peek() != Some(b',') {
            match p.param()? {
                Some(kv) => params.push(kv),
                // token68 (`Negotiate abc==`): carries nothing we use.
                None => p.skip(|c| c != b','),
            }
        }
        loop {
            p.skip_ws();
            if p.peek() != Some(b',') {
                break;
            }
            let save = p.pos;
            p.skip(|c| c == b' ' || c == b'\t' || c == b',');
            if p.at_end() {
                break;
            }
            match p.param()? {
                Some(kv) => params.push(kv),
                // A bare token after a comma is the next challenge's scheme.
                None => {
                    p.pos = save;
                    break;
                }
            }
        }
        out.push(build(&scheme, params)?);
    }
    if out.is_empty() {
        return Err(ChallengeError::Empty);
    }
    Ok(out)
}

fn build(scheme: &str, params: Vec<(String, String)>) -> Result<Challenge, ChallengeError> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if scheme.eq_ignore_ascii_case("bearer") {
        let realm = get("realm")
            .filter(|r| !r.is_empty())
            .ok_or(ChallengeError::BearerWithoutRealm)?;
        Ok(Challenge::Bearer(BearerChallenge {
            realm,
            service: get("service"),
            scope: get("scope"),
            error: get("error"),
        }))
    } else if scheme.eq_ignore_ascii_case("basic") {
        Ok(Challenge::Basic {
            realm: get("realm"),
        })
    } else {
        Ok(Challenge::Other {
            scheme: scheme.to_string(),
        })
    }
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    fn skip(&mut self, f: impl Fn(u8) -> bool) {
        while let Some(c) = self.peek() {
            if !f(c) {
                break;
            }
            self.pos += 1;
        }
    }
    fn skip_ws(&mut self) {
        self.skip(|c| c == b' ' || c == b'\t');
    }
    /// RFC 7230 §3.2.6 `token`.
    fn token(&mut self) -> Result<String, ChallengeError> {
        let start = self.pos;
        self.skip(is_tchar);
        if self.pos == start {
            return Err(ChallengeError::ExpectedToken { at: start });
        }
        Ok(self.text[start..self.pos].to_string())
    }
    /// `auth-param = token BWS "=" BWS ( token / quoted-string )`; `None` (position unchanged)
    /// when the input here is not a parameter.
    fn param(&mut self) -> Result<Option<(String, String)>, ChallengeError> {
        let save = self.pos;
        let Ok(name) = self.token() else {
            return Ok(None);
        };
        self.skip_ws();
        if self.peek() != Some(b'=') {
            self.pos = save;
            return Ok(None);
        }
        self.pos += 1;
        self.skip_ws();
        let value = match self.peek() {
            Some(b'"') => self.quoted()?,
            // `abc==` is token68 padding, not a parameter.
            Some(b'=') | Some(b',') | None => {
                self.pos = save;
                return Ok(None);
            }
            Some(_) => {
                // Lenient: some servers leave URLs unquoted; the value ends at a comma or space.
                let start = self.pos;
                self.skip(|c| c != b',' && c != b' ' && c != b'\t');
                self.text[start..self.pos].to_string()
            }
        };
        Ok(Some((name.to_ascii_lowercase(), value)))
    }

    /// RFC 7230 §3.2.6 `quoted-string`: a backslash quotes the next character.
    fn quoted(&mut self) -> Result<String, ChallengeError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                b'"' => return Ok(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => match self.peek() {
                    Some(n) => {
                        out.push(n);
                        self.pos += 1;
                    }
                    None => break,
                },
                _ => out.push(c),
            }
        }
        Err(ChallengeError::UnterminatedQuote { at: start })
    }
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Why credentials were kept from a token realm (logged, never sent anywhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Withheld {
    /// The realm is plain HTTP while the upstream itself is HTTPS: a downgrade.
    PlainHttpRealm,
    /// The realm is on a host that is neither the upstream's host, its domain, nor allow-listed.
    ForeignHost { realm_host: String },
    /// The realm URL has no host (e.g. `file:` or `data:`).
    NoHost,
}

impl fmt::Display for Withheld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Withheld::PlainHttpRealm => {
                f.write_str("the realm uses plain http while the upstream uses https")
            }
            Withheld::ForeignHost { realm_host } => write!(
                f,
                "realm host {realm_host} is not the upstream's host or domain and not in allowed_realms"
            ),
            Withheld::NoHost => f.write_str("the realm URL has no host"),
        }
    }
}

/// Decides whether the configured credentials may go to `realm` (issue 2 item 6: "only send
/// credentials to a realm on the upstream's own host or domain, or an allow-listed one").
///
/// - same host as `base` (any port): allowed;
/// - a host in the upstream's domain: the base host itself and its subdomains, and, when the
///   base host has three or more labels, its parent domain and the parent's subdomains (so
///   `registry-1.docker.io` may use `auth.docker.io`). Without a public-suffix list a base like
///   `foo.co.uk` would admit all of `co.uk`; list such realms in `allowed_realms` instead;
/// - IP addresses match only exactly;
/// - an `allowed_realms` entry is either a host (`auth.example.com`), `host:port`, or a URL
///   prefix (`https://auth.example.com/token`) matched on scheme, host, port and path prefix;
/// - never over plain http when the upstream itself is https.
pub fn may_send_credentials(base: &Url, realm: &Url, allowed: &[String]) -> Result<(), Withheld> {
    let Some(realm_host) = realm.host() else {
        return Err(Withheld::NoHost);
    };
    if base.scheme() == "https" && realm.scheme() != "https" {
        return Err(Withheld::PlainHttpRealm);
    }
    if allowed.iter().any(|a| allow_entry_matches(a, realm)) {
        return Ok(());
    }
    let realm_host_s = host_string(&realm_host);
    if let Some(base_host) = base.host() {
        if same_domain(&base_host, &realm_host) {
            return Ok(());
        }
    }
    Err(Withheld::ForeignHost {
        realm_host: realm_host_s,
    })
}

fn host_string(h: &Host<&str>) -> String {
    match h {
        Host::Domain(d) => d.to_ascii_lowercase(),
        Host::Ipv4(a) => a.to_string(),
        Host::Ipv6(a) => a.to_string(),
    }
}

fn same_domain(base: &Host<&str>, realm: &Host<&str>) -> bool {
    match (base, realm) {
        (Host::Domain(b), Host::Domain(r)) => {
            let b = b.trim_end_matches('.').to_ascii_lowercase();
            let r = r.trim_end_matches('.').to_ascii_lowercase();
            if r == b || is_subdomain(&r, &b) {
                return true;
            }
            let labels: Vec<&str> = b.split('.').collect();
            if labels.len() >= 3 {
                let parent = labels[1..].join(".");
                return r == parent || is_subdomain(&r, &parent);
            }
            false
        }
        (Host::Ipv4(a), Host::Ipv4(b)) => a == b,
        (Host::Ipv6(a), Host::Ipv6(b)) => a == b,
        _ => false,
    }
}

fn is_subdomain(host: &str, domain: &str) -> bool {
    host.len() > domain.len() + 1
        && host.ends_with(domain)
        && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
}

fn allow_entry_matches(entry: &str, realm: &Url) -> bool {
    let entry = entry.trim();
    if entry.contains("://") {
        let Ok(prefix) = Url::parse(entry) else {
            return false;
        };
        return prefix.scheme() == realm.scheme()
            && prefix.host_str().map(str::to_ascii_lowercase)
                == realm.host_str().map(str::to_ascii_lowercase)
            && prefix.port_or_known_default() == realm.port_or_known_default()
            && realm.path().starts_with(prefix.path());
    }
    let Some(realm_host) = realm.host() else {
        return false;
    };
    let realm_host = host_string(&realm_host);
    let entry = entry.to_ascii_lowercase();
    if entry == realm_host {
        return true;
    }
    match realm.port_or_known_default() {
        Some(port) => {
            entry == format!("{realm_host}:{port}") || entry == format!("[{realm_host}]:{port}")
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(realm: &str, service: Option<&str>, scope: Option<&str>) -> Challenge {
        Challenge::Bearer(BearerChallenge {
            realm: realm.into(),
            service: service.map(Into::into),
            scope: scope.map(Into::into),
            error: None,
        })
    }

    #[test]
    fn docker_hub_challenge() {
        let v = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#;
        assert_eq!(
            parse_challenges(v).unwrap(),
            vec![bearer(
                "https://auth.docker.io/token",
                Some("registry.docker.io"),
                Some("repository:library/alpine:pull")
            )]
        );
    }

    #[test]
    fn scope_with_commas_and_escapes_stays_whole() {
        let v =
            r#"Bearer realm="https://a/t",scope="repository:a/b:pull,push",service="s \"q\" \\ x""#;
        assert_eq!(
            parse_challenges(v).unwrap(),
            vec![bearer(
                "https://a/t",
                Some(r#"s "q" \ x"#),
                Some("repository:a/b:pull,push")
            )]
        );
    }

    #[test]
    fn case_spaces_and_error_param() {
        let v = r#"bearer  Realm = "https://a/t" , SERVICE="reg" ,error="insufficient_scope""#;
        let got = parse_challenges(v).unwrap();
        assert_eq!(
            got,
            vec![Challenge::Bearer(BearerChallenge {
                realm: "https://a/t".into(),
                service: Some("reg".into()),
                scope: None,
                error: Some("insufficient_scope".into()),
            })]
        );
    }

    #[test]
    fn several_challenges_in_one_value() {
        let v =
            r#"Basic realm="Registry Realm", Bearer realm="https://a/t",service="x", Negotiate"#;
        assert_eq!(
            parse_challenges(v).unwrap(),
            vec![
                Challenge::Basic {
                    realm: Some("Registry Realm".into())
                },
                bearer("https://a/t", Some("x"), None),
                Challenge::Other {
                    scheme: "Negotiate".into()
                },
            ]
        );
    }

    #[test]
    fn basic_without_params_and_token68() {
        assert_eq!(
            parse_challenges("Basic").unwrap(),
            vec![Challenge::Basic { realm: None }]
        );
        assert_eq!(
            parse_challenges("Negotiate abc==, Basic realm=x").unwrap(),
            vec![
                Challenge::Other {
                    scheme: "Negotiate".into()
                },
                Challenge::Basic {
                    realm: Some("x".into())
                }
            ]
        );
    }

    #[test]
    fn unquoted_url_realm() {
        assert_eq!(
            parse_challenges("Bearer realm=https://a:5000/token,service=reg").unwrap(),
            vec![bearer("https://a:5000/token", Some("reg"), None)]
        );
    }

    #[test]
    fn malformed() {
        assert_eq!(parse_challenges("  "), Err(ChallengeError::Empty));
        assert!(matches!(
            parse_challenges(r#"Bearer realm="https://a"#),
            Err(ChallengeError::UnterminatedQuote { .. })
        ));
        assert_eq!(
            parse_challenges(r#"Bearer service="x""#),
            Err(ChallengeError::BearerWithoutRealm)
        );
        assert_eq!(
            parse_challenges(r#"Bearer realm="""#),
            Err(ChallengeError::BearerWithoutRealm)
        );
    }

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn realm_same_host_any_port() {
        let base = u("https://registry.example.com");
        assert_eq!(
            may_send_credentials(&base, &u("https://registry.example.com:8443/t"), &[]),
            Ok(())
        );
        let base = u("http://127.0.0.1:5000");
        assert_eq!(
            may_send_credentials(&base, &u("http://127.0.0.1:6000/t"), &[]),
            Ok(())
        );
    }

    #[test]
    fn realm_in_parent_domain() {
        let base = u("https://registry-1.docker.io");
        assert_eq!(
            may_send_credentials(&base, &u("https://auth.docker.io/token"), &[]),
            Ok(())
        );
        assert_eq!(
            may_send_credentials(&base, &u("https://docker.io/token"), &[]),
            Ok(())
        );
    }

    #[test]
    fn realm_on_foreign_host_is_refused() {
        let base = u("https://registry-1.docker.io");
        for realm in [
            "https://evil.example/token",
            "https://docker.io.evil.example/token",
            "https://evildocker.io/token",
            "https://127.0.0.1/token",
        ] {
            assert!(
                matches!(
                    may_send_credentials(&base, &u(realm), &[]),
                    Err(Withheld::ForeignHost { .. })
                ),
                "{realm}"
            );
        }
        // Two-label base: its own subdomains only, never a sibling under the TLD.
        let base = u("https://docker.io");
        assert!(may_send_credentials(&base, &u("https://auth.docker.io/t"), &[]).is_ok());
        assert!(may_send_credentials(&base, &u("https://quay.io/t"), &[]).is_err());
        // IPs match exactly.
        let base = u("http://127.0.0.1:5000");
        assert!(may_send_credentials(&base, &u("http://127.0.0.2/t"), &[]).is_err());
        assert!(may_send_credentials(&base, &u("http://localhost/t"), &[]).is_err());
    }

    #[test]
    fn plain_http_realm_for_https_upstream_is_refused() {
        let base = u("https://registry.example.com");
        assert_eq!(
            may_send_credentials(&base, &u("http://registry.example.com/t"), &[]),
            Err(Withheld::PlainHttpRealm)
        );
        assert_eq!(
            may_send_credentials(
                &base,
                &u("http://auth.other/t"),
                &["auth.other".to_string()]
            ),
            Err(Withheld::PlainHttpRealm)
        );
    }

    #[test]
    fn allow_list_entries() {
        let base = u("https://registry.example.com");
        let realm = u("https://auth.other.net:8443/oauth/token");
        assert!(may_send_credentials(&base, &realm, &[]).is_err());
        for entry in [
            "auth.other.net",
            "AUTH.other.net:8443",
            "https://auth.other.net:8443/oauth",
        ] {
            assert_eq!(
                may_send_credentials(&base, &realm, &[entry.to_string()]),
                Ok(()),
                "{entry}"
            );
        }
        for entry in [
            "other.net",
            "auth.other.net:443",
            "https://auth.other.net/oauth",
            "https://auth.other.net:8443/other",
        ] {
            assert!(
                may_send_credentials(&base, &realm, &[entry.to_string()]).is_err(),
                "{entry}"
            );
        }
    }
}
