//! Parsing `/v2/...` requests into an [`Route`]: which upstream, which repository, which
//! endpoint. Pure, so it can be fuzzed.
//!
//! Upstream selection, in order:
//! 1. the `ns` query parameter (containerd adds `?ns=<registry>` when the proxy serves a
//!    registry host): the path is the repository in that registry, unchanged;
//! 2. a path prefix `/v2/<upstream-name>/<repo>/...` (registries.conf `location = "proxy/docker.io"`),
//!    used when the first path segment equals a configured upstream name exactly, or else an
//!    upstream's `path` alias (`/v2/corp/<repo>/...` for `path = "corp"`: podman and CRI-O
//!    refuse a port inside a repository path, so `proxy/registry.corp:5000` cannot be written
//!    in registries.conf);
//! 3. the default upstream.
//!
//! The raw path is checked before anything else: `%` (encoded slashes or dots), empty
//! segments, `.` and `..` never get past [`RouteTable::route`], and every name, tag and digest
//! is checked against the distribution-spec grammar.

use http::Method;

use super::errors::RegistryError;
use super::reference::{Digest, Reference, RepoName};

pub type RouteError = RegistryError;

/// Largest `n` accepted on `tags/list`; bounds what we ask an upstream for.
pub const MAX_TAGS_PAGE: u32 = 10_000;

/// The configured upstream names and which one is the default.
#[derive(Debug, Clone)]
pub struct RouteTable {
    names: Vec<String>,
    /// Per upstream, an optional path alias (`[[upstream]] path`).
    paths: Vec<Option<String>>,
    default: Option<usize>,
}

/// How the upstream was chosen (needed to write `Link` URLs the client can follow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutedBy {
    Namespace,
    PathPrefix,
    Default,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /v2/`: the API version check.
    ApiBase,
    Manifest {
        repo: RepoName,
        reference: Reference,
    },
    Blob {
        repo: RepoName,
        digest: Digest,
    },
    TagsList {
        repo: RepoName,
        n: Option<u32>,
        last: Option<String>,
    },
    Referrers {
        repo: RepoName,
        digest: Digest,
        artifact_type: Option<String>,
    },
}

impl Endpoint {
    pub fn repo(&self) -> Option<&RepoName> {
        match self {
            Endpoint::ApiBase => None,
            Endpoint::Manifest { repo, .. }
            | Endpoint::Blob { repo, .. }
            | Endpoint::TagsList { repo, .. }
            | Endpoint::Referrers { repo, .. } => Some(repo),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Index into the table's upstream names (and the proxy's client list). `None` only for
    /// [`Endpoint::ApiBase`], which needs no upstream.
    pub upstream: Option<usize>,
    pub upstream_name: Option<String>,
    pub routed_by: RoutedBy,
    /// The first path segment that selected the upstream (its name or its `path` alias),
    /// when [`RoutedBy::PathPrefix`].
    pub path_prefix: Option<String>,
    pub endpoint: Endpoint,
}

impl Route {
    /// The path prefix the client used for this repository, e.g. `/v2/docker.io/library/x`,
    /// plus the query suffix (`ns=...`) it needs, so proxy-relative URLs round-trip.
    pub fn client_repo_path(&self) -> Option<(String, Option<String>)> {
        let repo = self.endpoint.repo()?;
        match (&self.routed_by, &self.upstream_name) {
            (RoutedBy::PathPrefix, Some(u)) => Some((
                format!("/v2/{}/{repo}", self.path_prefix.as_deref().unwrap_or(u)),
                None,
            )),
            (RoutedBy::Namespace, Some(u)) => Some((format!("/v2/{repo}"), Some(u.clone()))),
            _ => Some((format!("/v2/{repo}"), None)),
        }
    }
}

impl RouteTable {
    pub fn new(names: Vec<String>, default: Option<usize>) -> RouteTable {
        RouteTable {
            paths: vec![None; names.len()],
            names,
            default,
        }
    }

    /// Sets the upstreams' `path` aliases (one entry per upstream, in the same order).
    pub fn with_paths(mut self, paths: Vec<Option<String>>) -> RouteTable {
        self.paths = paths;
        self
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    pub fn route(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
    ) -> Result<Route, RouteError> {
        let not_found = || RegistryError::NotFound {
            path: path.to_string(),
        };
        let rest = path.strip_prefix("/v2").ok_or_else(not_found)?;
        if !(method == Method::GET || method == Method::HEAD) {
            return Err(RegistryError::Unsupported {
                method: method.to_string(),
            });
        }
        if rest.is_empty() || rest == "/" {
            return Ok(Route {
                upstream: None,
                upstream_name: None,
                routed_by: RoutedBy::Default,
                path_prefix: None,
                endpoint: Endpoint::ApiBase,
            });
        }
        let rest = rest.strip_prefix('/').ok_or_else(not_found)?;
        if rest.contains('%') {
            // Encoded characters (%2F, %2E...) are never legal in names, tags or digests.
            return Err(RegistryError::NotFound {
                path: path.to_string(),
            });
        }
        let segs: Vec<&str> = rest.split('/').collect();
        if segs.iter().any(|s| s.is_empty() || *s == "." || *s == "..") {
            return Err(not_found());
        }
        let params = Query::parse(query);

        // Endpoint suffixes, matched from the right because names contain slashes.
        let n = segs.len();
        let (name_segs, kind): (&[&str], Kind) = if n >= 3 && segs[n - 2] == "manifests" {
            (&segs[..n - 2], Kind::Manifest(segs[n - 1]))
        } else if n >= 3 && segs[n - 2] == "blobs" {
            (&segs[..n - 2], Kind::Blob(segs[n - 1]))
        } else if n >= 3 && segs[n - 2] == "referrers" {
            (&segs[..n - 2], Kind::Referrers(segs[n - 1]))
        } else if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
            (&segs[..n - 2], Kind::Tags)
        } else if segs.contains(&"uploads") && segs.contains(&"blobs") {
            // Upload sessions are reached only by write methods, refused above; a GET on one
            // is a status query of a push, equally unsupported.
            return Err(RegistryError::Unsupported {
                method: method.to_string(),
            });
        } else {
            return Err(not_found());
        };

        let name_segs_prefix = name_segs.first().copied().unwrap_or_default();
        let (upstream, routed_by, name_segs) =
            self.pick_upstream(name_segs, params.ns.as_deref())?;
        let repo = RepoName::parse(&name_segs.join("/"))?;
        let endpoint = match kind {
            Kind::Manifest(r) => Endpoint::Manifest {
                repo,
                reference: Reference::parse(r)?,
            },
            Kind::Blob(d) => Endpoint::Blob {
                repo,
                digest: Digest::parse(d)?,
            },
            Kind::Referrers(d) => Endpoint::Referrers {
                repo,
                digest: Digest::parse(d)?,
                artifact_type: params.artifact_type,
            },
            Kind::Tags => {
                let n = match params.n {
                    None => None,
                    Some(s) => match s.parse::<u32>() {
                        Ok(v) if v <= MAX_TAGS_PAGE => Some(v),
                        _ => {
                            return Err(RegistryError::BadQuery {
                                param: "n",
                                reason: format!("expected an integer from 0 to {MAX_TAGS_PAGE}"),
                            })
                        }
                    },
                };
                if let Some(l) = &params.last {
                    // `last` is a tag; refusing others keeps the upstream query well-formed.
                    super::reference::Tag::parse(l)?;
                }
                Endpoint::TagsList {
                    repo,
                    n,
                    last: params.last,
                }
            }
        };
        Ok(Route {
            upstream: Some(upstream),
            upstream_name: self.names.get(upstream).cloned(),
            path_prefix: (routed_by == RoutedBy::PathPrefix).then(|| name_segs_prefix.to_owned()),
            routed_by,
            endpoint,
        })
    }

    fn pick_upstream<'a>(
        &self,
        name_segs: &'a [&'a str],
        ns: Option<&str>,
    ) -> Result<(usize, RoutedBy, &'a [&'a str]), RegistryError> {
        if let Some(ns) = ns {
            let i = self
                .index_of(ns)
                .ok_or_else(|| RegistryError::UnknownUpstream {
                    name: ns.to_string(),
                })?;
            return Ok((i, RoutedBy::Namespace, name_segs));
        }
        if name_segs.len() >= 2 {
            let by_name = self.index_of(name_segs[0]);
            let by_path = || {
                self.paths
                    .iter()
                    .position(|p| p.as_deref() == Some(name_segs[0]))
            };
            if let Some(i) = by_name.or_else(by_path) {
                return Ok((i, RoutedBy::PathPrefix, &name_segs[1..]));
            }
        }
        match self.default {
            Some(i) => Ok((i, RoutedBy::Default, name_segs)),
            None => Err(RegistryError::NoUpstream),
        }
    }
}

enum Kind<'a> {
    Manifest(&'a str),
    Blob(&'a str),
    Referrers(&'a str),
    Tags,
}

#[derive(Default)]
struct Query {
    ns: Option<String>,
    n: Option<String>,
    last: Option<String>,
    artifact_type: Option<String>,
}

impl Query {
    fn parse(q: Option<&str>) -> Query {
        let mut out = Query::default();
        for (k, v) in url::form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "ns" => out.ns = Some(v.into_owned()),
                "n" => out.n = Some(v.into_owned()),
                "last" => out.last = Some(v.into_owned()),
                "artifactType" => out.artifact_type = Some(v.into_owned()),
                // Other parameters are not forwarded, so they cannot smuggle anything upstream.
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::errors::OciCode;

    fn table() -> RouteTable {
        RouteTable::new(vec!["docker.io".into(), "127.0.0.1:5001".into()], Some(1))
    }

    #[test]
    fn a_path_alias_selects_its_upstream_and_is_stripped() {
        let t = RouteTable::new(
            vec!["docker.io".into(), "registry.corp:5000".into()],
            Some(0),
        )
        .with_paths(vec![None, Some("corp".into())]);
        let r = t
            .route(&Method::GET, "/v2/corp/team/app/manifests/v1", None)
            .unwrap();
        assert_eq!(r.upstream, Some(1));
        assert_eq!(r.upstream_name.as_deref(), Some("registry.corp:5000"));
        assert_eq!(r.routed_by, RoutedBy::PathPrefix);
        assert_eq!(r.endpoint.repo().unwrap().as_str(), "team/app");
        // Links the client follows keep the alias it used.
        assert_eq!(
            r.client_repo_path(),
            Some(("/v2/corp/team/app".to_string(), None))
        );
        // The name still works, and a lone segment is a repository of the default.
        let r = t
            .route(
                &Method::GET,
                "/v2/registry.corp:5000/team/app/manifests/v1",
                None,
            )
            .unwrap();
        assert_eq!(r.upstream, Some(1));
        let r = t
            .route(&Method::GET, "/v2/corp/manifests/v1", None)
            .unwrap();
        assert_eq!(r.upstream, Some(0));
        assert_eq!(r.endpoint.repo().unwrap().as_str(), "corp");
    }

    fn get(path: &str, q: Option<&str>) -> Result<Route, RouteError> {
        table().route(&Method::GET, path, q)
    }

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn api_base() {
        assert_eq!(get("/v2/", None).unwrap().endpoint, Endpoint::ApiBase);
        assert_eq!(get("/v2", None).unwrap().endpoint, Endpoint::ApiBase);
    }

    #[test]
    fn manifests_by_tag_and_digest_on_default() {
        let r = get("/v2/library/alpine/manifests/latest", None).unwrap();
        assert_eq!(r.upstream, Some(1));
        assert_eq!(r.routed_by, RoutedBy::Default);
        match r.endpoint {
            Endpoint::Manifest { repo, reference } => {
                assert_eq!(repo.as_str(), "library/alpine");
                assert!(matches!(reference, Reference::Tag(t) if t.as_str() == "latest"));
            }
            e => panic!("{e:?}"),
        }
        let r = get(&format!("/v2/a/manifests/{D}"), None).unwrap();
        assert!(matches!(
            r.endpoint,
            Endpoint::Manifest {
                reference: Reference::Digest(_),
                ..
            }
        ));
    }

    #[test]
    fn ns_parameter_selects_upstream_and_keeps_path() {
        let r = get("/v2/library/alpine/manifests/latest", Some("ns=docker.io")).unwrap();
        assert_eq!(r.upstream, Some(0));
        assert_eq!(r.routed_by, RoutedBy::Namespace);
        assert_eq!(r.endpoint.repo().unwrap().as_str(), "library/alpine");
        let e = get("/v2/a/manifests/latest", Some("ns=quay.io")).unwrap_err();
        assert!(matches!(e, RegistryError::UnknownUpstream { .. }));
    }

    #[test]
    fn path_prefix_selects_upstream_and_strips_it() {
        let r = get(&format!("/v2/docker.io/library/alpine/blobs/{D}"), None).unwrap();
        assert_eq!(r.upstream, Some(0));
        assert_eq!(r.routed_by, RoutedBy::PathPrefix);
        assert_eq!(r.endpoint.repo().unwrap().as_str(), "library/alpine");
        let r = get("/v2/127.0.0.1:5001/x/tags/list", Some("n=5&last=v1")).unwrap();
        assert_eq!(r.upstream, Some(1));
        assert_eq!(
            r.endpoint,
            Endpoint::TagsList {
                repo: RepoName::parse("x").unwrap(),
                n: Some(5),
                last: Some("v1".into())
            }
        );
        assert_eq!(r.client_repo_path().unwrap().0, "/v2/127.0.0.1:5001/x");
    }

    #[test]
    fn no_default_and_no_hint_is_an_error() {
        let t = RouteTable::new(vec!["docker.io".into()], None);
        assert!(matches!(
            t.route(&Method::GET, "/v2/a/manifests/x", None),
            Err(RegistryError::NoUpstream)
        ));
    }

    #[test]
    fn writes_are_unsupported() {
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            let e = table().route(&m, "/v2/a/blobs/uploads/", None).unwrap_err();
            assert_eq!(e.parts().code, OciCode::Unsupported, "{m}");
            let e = table()
                .route(&m, "/v2/a/manifests/latest", None)
                .unwrap_err();
            assert_eq!(e.parts().status, http::StatusCode::METHOD_NOT_ALLOWED);
        }
        let e = get("/v2/a/blobs/uploads/1234", None).unwrap_err();
        assert_eq!(e.parts().code, OciCode::Unsupported);
    }

    #[test]
    fn traversal_and_encoding_never_pass() {
        for p in [
            "/v2/a/../b/manifests/latest",
            "/v2/a/./b/manifests/latest",
            "/v2/a//b/manifests/latest",
            "/v2/a%2Fb/manifests/latest",
            "/v2/a/manifests/lat%65st",
            "/v2/a/manifests/",
            "/v3/a/manifests/latest",
            "/v2/a/unknown/x",
        ] {
            assert!(get(p, None).is_err(), "{p}");
        }
    }

    #[test]
    fn grammar_errors_surface_with_their_codes() {
        assert_eq!(
            get("/v2/A/manifests/latest", None)
                .unwrap_err()
                .parts()
                .code,
            OciCode::NameInvalid
        );
        assert_eq!(
            get("/v2/a/manifests/-x", None).unwrap_err().parts().code,
            OciCode::TagInvalid
        );
        assert_eq!(
            get("/v2/a/blobs/sha256:abc", None)
                .unwrap_err()
                .parts()
                .code,
            OciCode::DigestInvalid
        );
        assert_eq!(
            get("/v2/a/tags/list", Some("n=abc"))
                .unwrap_err()
                .parts()
                .status,
            http::StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn referrers_keep_artifact_type() {
        let r = get(
            &format!("/v2/a/referrers/{D}"),
            Some("artifactType=application%2Fx"),
        )
        .unwrap();
        assert!(
            matches!(r.endpoint, Endpoint::Referrers { artifact_type: Some(ref t), .. } if t == "application/x")
        );
    }

    /// Random paths never panic, and whatever is accepted has only grammar-valid parts.
    #[test]
    fn random_paths_never_panic_and_accepted_ones_are_valid() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let alphabet: Vec<char> = "abcAZ09/._-:%2e@?=&ns".chars().collect();
        let pieces = [
            "/v2/",
            "manifests/",
            "blobs/",
            "tags/list",
            "referrers/",
            "uploads/",
            D,
            "..",
            "docker.io/",
        ];
        for _ in 0..20_000 {
            let mut p = String::from("/v2/");
            for _ in 0..rng.gen_range(0..8) {
                if rng.gen_bool(0.3) {
                    p.push_str(pieces[rng.gen_range(0..pieces.len())]);
                } else {
                    p.push(alphabet[rng.gen_range(0..alphabet.len())]);
                }
            }
            let (path, query) = match p.split_once('?') {
                Some((a, b)) => (a.to_string(), Some(b.to_string())),
                None => (p.clone(), None),
            };
            if let Ok(r) = table().route(&Method::GET, &path, query.as_deref()) {
                if let Some(repo) = r.endpoint.repo() {
                    assert!(RepoName::parse(repo.as_str()).is_ok(), "{p}");
                    assert!(!repo.as_str().contains(".."), "{p}");
                }
            }
        }
    }
}
