//! Which token realms may receive the configured credentials. Pure: no I/O.

use std::fmt;

use url::{Host, Url};

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
