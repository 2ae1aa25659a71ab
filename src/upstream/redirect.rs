//! Which redirects an upstream may send trustgate to (PROXY-REVIEW D17).
//!
//! Registries redirect blob GETs to object storage or a CDN on another host, so cross-host
//! redirects must work. What must not: a downgrade from https to http (the bytes, and anything
//! the target answers, would travel in clear text), and an upstream on the network steering
//! trustgate at its own machine or the link-local range (cloud metadata at 169.254.169.254):
//! blob bytes stream to the client before their digest check completes, so the body of such a
//! target would reach the person pulling. Private ranges stay allowed: on-site registries
//! commonly redirect to storage on private addresses. A host *name* that resolves to loopback is
//! not caught here (the policy sees URLs, not resolved addresses).

use std::net::IpAddr;

use url::{Host, Url};

/// The host is this machine: `localhost`, 127.0.0.0/8, ::1.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(a)) => IpAddr::V4(a).is_loopback(),
        Some(Host::Ipv6(a)) => IpAddr::V6(a).is_loopback(),
        None => false,
    }
}

fn is_internal(url: &Url) -> bool {
    let ip = match url.host() {
        Some(Host::Ipv4(a)) => IpAddr::V4(a),
        Some(Host::Ipv6(a)) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(a),
        },
        _ => return is_loopback(url),
    };
    match ip {
        IpAddr::V4(a) => a.is_loopback() || a.is_link_local() || a.is_unspecified(),
        // fe80::/10 is link-local unicast.
        IpAddr::V6(a) => {
            a.is_loopback() || a.is_unspecified() || (a.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Whether a redirect from the request that started at `origin` to `target` may be followed;
/// the error says why not.
pub fn check(origin: &Url, target: &Url) -> Result<(), String> {
    if origin.scheme() == "https" && target.scheme() != "https" {
        return Err(format!(
            "redirect from https to {}:// refused (would downgrade the connection)",
            target.scheme()
        ));
    }
    if !matches!(target.scheme(), "http" | "https") {
        return Err(format!("redirect to a {}: URL refused", target.scheme()));
    }
    if is_internal(target) && !is_internal(origin) {
        return Err(format!(
            "redirect to {} refused: a remote upstream may not send trustgate to loopback or \
             link-local addresses",
            target.host_str().unwrap_or("?")
        ));
    }
    Ok(())
}

/// reqwest's redirect policy: at most `max` hops, each passing [`check`] against the first URL.
pub fn policy(max: usize) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > max {
            return attempt.error(format!("more than {max} redirects"));
        }
        let verdict = match attempt.previous().first() {
            Some(origin) => check(origin, attempt.url()),
            None => Ok(()),
        };
        match verdict {
            Ok(()) => attempt.follow(),
            Err(reason) => attempt.error(reason),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn object_storage_on_another_host_is_followed() {
        assert!(check(
            &u("https://registry.example/v2/x/blobs/sha256:aa"),
            &u("https://storage.example/bucket/aa?sig=1")
        )
        .is_ok());
        assert!(check(&u("https://r.example/"), &u("https://10.0.0.7:9000/b")).is_ok());
        assert!(check(&u("http://r.example/"), &u("http://r2.example/")).is_ok());
    }

    #[test]
    fn downgrades_and_internal_targets_are_refused() {
        let e = check(&u("https://r.example/"), &u("http://r.example/b")).unwrap_err();
        assert!(e.contains("downgrade"), "{e}");
        for target in [
            "http://127.0.0.1:8080/",
            "http://localhost/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
        ] {
            assert!(
                check(&u("http://r.example/"), &u(target)).is_err(),
                "{target}"
            );
        }
        assert!(check(&u("https://r.example/"), &u("file:///etc/passwd")).is_err());
    }

    #[test]
    fn a_loopback_upstream_may_redirect_on_loopback() {
        assert!(check(&u("http://127.0.0.1:5000/"), &u("http://localhost:5001/")).is_ok());
    }
}
