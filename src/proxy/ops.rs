//! Operator endpoints outside the registry API: `/metrics` (Prometheus text), `/healthz`
//! (the process answers) and `/readyz` (a policy is loaded, so pulls will be judged).
//!
//! With `ops_listen` configured they have a listener of their own ([`handle`]) and the registry
//! listeners stop answering `/metrics`: what the proxy counts (repositories, refusals) is for
//! operators, not for everyone who can pull.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Response, StatusCode};

use super::{body, AppState, ProxyBody};

/// The ops endpoints as the registry listener answers them.
pub fn serve(state: &AppState, method: &Method, path: &str) -> Option<Response<ProxyBody>> {
    if path == "/metrics" && !state.config.ops_listen.is_empty() {
        return None;
    }
    answer(state, method, path)
}

/// The ops listener: the ops endpoints, and 404 for anything else.
pub fn handle(state: &AppState, method: &Method, path: &str) -> Response<ProxyBody> {
    answer(state, method, path).unwrap_or_else(|| {
        let mut r = Response::new(body::full(Bytes::from_static(b"not found\n")));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    })
}

fn answer(state: &AppState, method: &Method, path: &str) -> Option<Response<ProxyBody>> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let (status, ctype, text) = match path {
        "/healthz" => (
            StatusCode::OK,
            "application/json",
            "{\"status\":\"ok\"}".to_string(),
        ),
        "/metrics" => {
            // Sizes and expiry are sampled when read, not tracked on every change.
            state.metrics.set_cache_sizes(
                state.content.as_ref().map_or(0, |c| c.held_bytes()),
                state.manifests.held_bytes(),
                state.enforcer.tag_entries(),
            );
            let expiry = state.enforcer.trust_expiry();
            state
                .metrics
                .set_trust_expiry(expiry.earliest.map(|s| s as f64), &expiry.per_server);
            (
                StatusCode::OK,
                crate::metrics::CONTENT_TYPE,
                state.metrics.render(),
            )
        }
        "/readyz" => {
            // The handle always holds a validated policy (an invalid file never replaces
            // it), so a state that exists is ready; report which policy is in force.
            let p = state.enforcer.policy.current();
            (
                StatusCode::OK,
                "text/plain",
                format!(
                    "ready: policy {} (generation {})\n",
                    p.origin(),
                    state.enforcer.policy.generation()
                ),
            )
        }
        _ => return None,
    };
    let body = if method == Method::HEAD {
        body::empty()
    } else {
        body::full(Bytes::from(text))
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    Some(r)
}
