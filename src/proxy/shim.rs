//! Temporary stand-in for `crate::upstream::UpstreamClient` (same surface: `new`, `name`,
//! `request_timeout`, `send`) until the upstream branch with token auth is merged. No auth.

use std::time::Duration;

use crate::upstream::{ClientSettings, UpstreamError, UpstreamRequest};

pub struct UpstreamClient {
    name: String,
    base_url: url::Url,
    http: reqwest::Client,
    request_timeout: Duration,
}

impl UpstreamClient {
    pub fn new(settings: ClientSettings) -> Result<Self, UpstreamError> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .build()
            .map_err(|e| UpstreamError::Settings {
                upstream: settings.name.clone(),
                reason: e.to_string(),
            })?;
        Ok(UpstreamClient {
            name: settings.name,
            base_url: settings.base_url,
            http,
            request_timeout: settings.request_timeout,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    pub async fn send(&self, req: UpstreamRequest) -> Result<reqwest::Response, UpstreamError> {
        let url = format!(
            "{}{}",
            self.base_url.as_str().trim_end_matches('/'),
            req.path_and_query
        );
        let fut = self
            .http
            .request(req.method, url)
            .headers(req.headers)
            .send();
        match tokio::time::timeout(self.request_timeout, fut).await {
            Err(_) => Err(UpstreamError::Timeout {
                upstream: self.name.clone(),
                timeout: self.request_timeout,
            }),
            Ok(Err(e)) => Err(UpstreamError::Unreachable {
                upstream: self.name.clone(),
                reason: e.without_url().to_string(),
            }),
            Ok(Ok(r)) => Ok(r),
        }
    }
}
