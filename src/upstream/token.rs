//! Docker token auth (distribution `docs/spec/auth/token.md`): fetching a token from a
//! challenge's realm and caching it per scope until shortly before it expires.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

/// A bearer token. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(Arc<str>);

impl BearerToken {
    pub(crate) fn new(s: &str) -> Self {
        BearerToken(Arc::from(s))
    }
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// Tokens shorter-lived than this are treated as living this long, as the Docker client does
/// (`minimumTokenLifetimeSeconds` in docker/distribution `registry/client/auth/session.go`).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// The token endpoint's answer. Either field may carry the token (`access_token` is the OAuth2
/// name); the spec leaves the choice open when both are present, and like the Docker client
/// (`registry/client/auth/session.go`) we take `access_token`.
#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<i64>,
    #[serde(default)]
    issued_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenResponseError {
    #[error("token response is not JSON of the expected shape: {reason}")]
    Malformed { reason: String },
    #[error("token response carries neither `token` nor `access_token`")]
    NoToken,
}

/// A parsed token with the time until it should no longer be used.
#[derive(Debug, Clone)]
pub struct ParsedToken {
    pub token: BearerToken,
    /// How long to keep using it, counted from when the response arrived (margin included).
    pub use_for: Duration,
}

/// Parses a token response received at `now`. The lifetime is `expires_in` (at least
/// [`DEFAULT_TOKEN_LIFETIME`]) counted from `issued_at` when that lies in the past (a token
/// that sat in a cache is older than its arrival), otherwise from `now` (the issuer's clock
/// may run ahead of ours). A margin (a tenth of the lifetime, 1–30 s) keeps us from sending a
/// token that expires in flight.
pub fn parse_token_response(
    body: &[u8],
    now: SystemTime,
) -> Result<ParsedToken, TokenResponseError> {
    let r: TokenResponse =
        serde_json::from_slice(body).map_err(|e| TokenResponseError::Malformed {
            reason: e.to_string(),
        })?;
    let token = r
        .access_token
        .filter(|t| !t.is_empty())
        .or(r.token.filter(|t| !t.is_empty()))
        .ok_or(TokenResponseError::NoToken)?;
    let lifetime = r
        .expires_in
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
        .filter(|d| *d >= DEFAULT_TOKEN_LIFETIME)
        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
    let age = r
        .issued_at
        .as_deref()
        .and_then(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
        })
        .and_then(|issued| now.duration_since(SystemTime::from(issued)).ok())
        .unwrap_or(Duration::ZERO);
    let margin = (lifetime / 10).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let use_for = lifetime.saturating_sub(age).saturating_sub(margin);
    Ok(ParsedToken {
        token: BearerToken::new(&token),
        use_for,
    })
}

#[derive(Debug, Clone)]
struct Cached {
    token: BearerToken,
    refresh_at: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// Tokens per scope for one upstream. Each scope has its own async lock, so concurrent
/// requests that need the same scope wait for one fetch instead of each fetching.
#[derive(Default)]
pub struct TokenCache {
    slots: Mutex<HashMap<String, Slot>>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.slots.lock().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("TokenCache").field("scopes", &n).finish()
    }
}

/// Above this many scopes, expired entries are dropped when a new scope is added.
const PRUNE_ABOVE: usize = 1024;

impl TokenCache {
    fn slot(&self, scope: &str, create: bool) -> Option<Slot> {
        // A poisoned map only means another task panicked mid-insert; the map is still usable.
        let mut map = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(scope) {
            return Some(s.clone());
        }
        if !create {
            return None;
        }
        if map.len() >= PRUNE_ABOVE {
            let now = Instant::now();
            map.retain(|_, s| match s.try_lock() {
                Ok(g) => g.as_ref().is_some_and(|c| c.refresh_at > now),
                Err(_) => true,
            });
        }
        let s: Slot = Arc::default();
        map.insert(scope.to_string(), s.clone());
        Some(s)
    }

    /// The cached token for `scope` if it is still fresh.
    pub async fn get(&self, scope: &str) -> Option<BearerToken> {
        let slot = self.slot(scope, false)?;
        let g = slot.lock().await;
        g.as_ref()
            .filter(|c| c.refresh_at > Instant::now())
            .map(|c| c.token.clone())
    }

    /// A fresh token for `scope`: the cached one unless it is stale or is `rejected` (the token
    /// the upstream just answered 401 to), else the result of `fetch`, which is then cached.
    pub async fn get_or_fetch<F, Fut, E>(
        &self,
        scope: &str,
        rejected: Option<&BearerToken>,
        fetch: F,
    ) -> Result<BearerToken, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<ParsedToken, E>>,
    {
        let Some(slot) = self.slot(scope, true) else {
            // Unreachable (create = true), but fetching uncached is the safe answer anyway.
            return fetch().await.map(|p| p.token);
        };
        let mut g = slot.lock().await;
        if let Some(c) = g.as_ref() {
            if c.refresh_at > Instant::now() && rejected != Some(&c.token) {
                return Ok(c.token.clone());
            }
        }
        let parsed = fetch().await?;
        *g = Some(Cached {
            token: parsed.token.clone(),
            refresh_at: Instant::now() + parsed.use_for,
        });
        Ok(parsed.token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        SystemTime::from(
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap(),
        )
    }

    #[test]
    fn token_or_access_token() {
        let now = SystemTime::now();
        let p = parse_token_response(br#"{"token":"abc"}"#, now).unwrap();
        assert_eq!(p.token.expose(), "abc");
        let p = parse_token_response(br#"{"access_token":"xyz","expires_in":300}"#, now).unwrap();
        assert_eq!(p.token.expose(), "xyz");
        assert_eq!(p.use_for, Duration::from_secs(270));
        let p = parse_token_response(br#"{"token":"","access_token":"xyz"}"#, now).unwrap();
        assert_eq!(p.token.expose(), "xyz");
        let p = parse_token_response(br#"{"token":"abc","access_token":"xyz"}"#, now).unwrap();
        assert_eq!(p.token.expose(), "xyz");
        let p = parse_token_response(br#"{"token":"abc","access_token":""}"#, now).unwrap();
        assert_eq!(p.token.expose(), "abc");
        assert_eq!(
            parse_token_response(br#"{"expires_in":300}"#, now).unwrap_err(),
            TokenResponseError::NoToken
        );
        assert!(matches!(
            parse_token_response(b"<html>", now),
            Err(TokenResponseError::Malformed { .. })
        ));
    }

    #[test]
    fn lifetime_defaults_and_minimum() {
        let now = SystemTime::now();
        // Missing, zero, negative and too short all mean 60 s, minus the 6 s margin.
        for body in [
            r#"{"token":"t"}"#,
            r#"{"token":"t","expires_in":0}"#,
            r#"{"token":"t","expires_in":-5}"#,
            r#"{"token":"t","expires_in":10}"#,
        ] {
            let p = parse_token_response(body.as_bytes(), now).unwrap();
            assert_eq!(p.use_for, Duration::from_secs(54), "{body}");
        }
        let p = parse_token_response(br#"{"token":"t","expires_in":3600}"#, now).unwrap();
        assert_eq!(p.use_for, Duration::from_secs(3570));
    }

    #[test]
    fn issued_at_in_the_past_shortens_future_is_ignored() {
        let now = at("2026-01-01T00:10:00Z");
        let body = br#"{"token":"t","expires_in":900,"issued_at":"2026-01-01T00:00:00Z"}"#;
        let p = parse_token_response(body, now).unwrap();
        assert_eq!(p.use_for, Duration::from_secs(900 - 600 - 30));
        let body = br#"{"token":"t","expires_in":900,"issued_at":"2026-01-01T01:00:00.5Z"}"#;
        let p = parse_token_response(body, now).unwrap();
        assert_eq!(p.use_for, Duration::from_secs(900 - 30));
        // Already expired: zero, so it is never served from the cache.
        let body = br#"{"token":"t","expires_in":60,"issued_at":"2025-01-01T00:00:00Z"}"#;
        assert_eq!(
            parse_token_response(body, now).unwrap().use_for,
            Duration::ZERO
        );
    }

    #[test]
    fn debug_is_redacted() {
        let t = BearerToken::new("secret-token");
        assert!(!format!("{t:?}").contains("secret"));
        let p = parse_token_response(br#"{"token":"secret-token"}"#, SystemTime::now()).unwrap();
        assert!(!format!("{p:?}").contains("secret"));
    }

    #[tokio::test]
    async fn cache_shares_one_fetch_and_refetches_a_rejected_token() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let cache = Arc::new(TokenCache::default());
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let cache = cache.clone();
            let fetches = fetches.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch("s", None, || async {
                        let n = fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, ()>(ParsedToken {
                            token: BearerToken::new(&format!("t{n}")),
                            use_for: Duration::from_secs(60),
                        })
                    })
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().expose(), "t0");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert_eq!(cache.get("s").await.unwrap().expose(), "t0");
        assert!(cache.get("other").await.is_none());

        let rejected = BearerToken::new("t0");
        let t = cache
            .get_or_fetch("s", Some(&rejected), || async {
                Ok::<_, ()>(ParsedToken {
                    token: BearerToken::new("t1"),
                    use_for: Duration::ZERO,
                })
            })
            .await
            .unwrap();
        assert_eq!(t.expose(), "t1");
        // Zero lifetime: not served from the cache.
        assert!(cache.get("s").await.is_none());
    }
}
