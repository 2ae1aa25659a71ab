//! Operator endpoints outside the registry API: `/metrics` (Prometheus text), `/healthz`
//! (the process answers) and `/readyz` (a policy is loaded, so pulls will be judged).

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Response, StatusCode};

use super::{body, AppState, ProxyBody};

pub fn serve(state: &AppState, method: &Method, path: &str) -> Option<Response<ProxyBody>> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let (status, ctype, text) = match path {
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            state.metrics.render(),
        ),
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
