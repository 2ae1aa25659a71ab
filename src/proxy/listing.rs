//! `tags/list` (with its `Link` pagination header rewritten to point at the proxy) and
//! `referrers` (passed through). Both take a [`Permit`]: the upstream is asked with
//! trustgate's credentials, so a listing is judged by the policy first
//! ([`super::enforced::serve_tags_list`]).

use http::header::{HeaderValue, CONTENT_TYPE, LINK};
use http::{HeaderMap, Method, Response, StatusCode};

use super::{body, copy_headers, send_upstream, upstream_failure, AppState, ProxyBody, RequestCtx};
use crate::policy::Permit;
use crate::registry::{Digest, RegistryError, RepoName};

pub async fn serve_tags_list(
    state: &AppState,
    ctx: &RequestCtx,
    repo: &RepoName,
    n: Option<u32>,
    last: Option<&str>,
    _permit: &Permit,
) -> Result<Response<ProxyBody>, RegistryError> {
    let q = {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if let Some(n) = n {
            q.append_pair("n", &n.to_string());
        }
        if let Some(l) = last {
            q.append_pair("last", l);
        }
        q.finish()
    };
    let path = if q.is_empty() {
        format!("/v2/{repo}/tags/list")
    } else {
        format!("/v2/{repo}/tags/list?{q}")
    };
    let method = if ctx.head() {
        Method::HEAD
    } else {
        Method::GET
    };
    let resp = send_upstream(state, ctx, repo, method, path, HeaderMap::new()).await?;
    if resp.status() != StatusCode::OK {
        return Err(upstream_failure(ctx, repo, resp).await);
    }
    let mut out = HeaderMap::new();
    copy_headers(
        resp.headers(),
        &mut out,
        &["content-type", "content-length"],
    );
    if let Some(link) = resp.headers().get(LINK).and_then(|v| v.to_str().ok()) {
        if let Some(v) = rewrite_link(ctx, link).and_then(|s| HeaderValue::from_str(&s).ok()) {
            out.insert(LINK, v);
        }
    }
    let b = if ctx.head() {
        body::empty()
    } else {
        body::from_response(resp, super::client(state, ctx)?.request_timeout())
    };
    let mut r = Response::new(b);
    *r.headers_mut() = out;
    Ok(r)
}

/// `<https://upstream/v2/repo/tags/list?last=x&n=10>; rel="next"` → the same page on the
/// proxy, in the path form the client used (prefix or `ns=`), relative so it resolves against
/// whatever address the client reached the proxy at. Only `n` and `last` survive.
pub fn rewrite_link(ctx: &RequestCtx, link: &str) -> Option<String> {
    let start = link.find('<')?;
    let end = link[start..].find('>')? + start;
    let target = &link[start + 1..end];
    let rest = &link[end + 1..];
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let (repo_path, ns) = ctx.route.client_repo_path()?;
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if k == "n" || k == "last" {
            q.append_pair(&k, &v);
        }
    }
    if let Some(ns) = ns {
        q.append_pair("ns", &ns);
    }
    let q = q.finish();
    Some(format!("<{repo_path}/tags/list?{q}>{rest}"))
}

pub async fn serve_referrers(
    state: &AppState,
    ctx: &RequestCtx,
    repo: &RepoName,
    digest: &Digest,
    artifact_type: Option<&str>,
    _permit: &Permit,
) -> Result<Response<ProxyBody>, RegistryError> {
    let mut path = format!("/v2/{repo}/referrers/{digest}");
    if let Some(t) = artifact_type {
        let q: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("artifactType", t)
            .finish();
        path = format!("{path}?{q}");
    }
    let method = if ctx.head() {
        Method::HEAD
    } else {
        Method::GET
    };
    let resp = send_upstream(state, ctx, repo, method, path, HeaderMap::new()).await?;
    if resp.status() != StatusCode::OK {
        return Err(upstream_failure(ctx, repo, resp).await);
    }
    let mut out = HeaderMap::new();
    copy_headers(
        resp.headers(),
        &mut out,
        &["content-type", "content-length", "oci-filters-applied"],
    );
    out.entry(CONTENT_TYPE)
        .or_insert(HeaderValue::from_static(crate::registry::media::OCI_INDEX));
    let b = if ctx.head() {
        body::empty()
    } else {
        body::from_response(resp, super::client(state, ctx)?.request_timeout())
    };
    let mut r = Response::new(b);
    *r.headers_mut() = out;
    Ok(r)
}
