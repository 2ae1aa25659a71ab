//! Where trust metadata comes from. Verification never does I/O itself: it asks a
//! [`MetadataSource`] for bytes (the HTTP one talks to a notary-server; tests use in-memory ones
//! that lie on purpose).

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The server answered 404 (`METADATA_NOT_FOUND`): it holds no such file.
    #[error("{file} not found on the trust server")]
    NotFound { file: String },
    /// Network error, timeout or 5xx: the server could not be asked.
    #[error("trust server unreachable while fetching {file}: {reason}")]
    Unreachable { file: String, reason: String },
    /// The file exceeded the size bound for its role; the download was aborted.
    #[error("{file} exceeds its size limit of {limit} bytes")]
    TooLarge { file: String, limit: u64 },
    /// Any other refusal (401/403 after auth, unexpected status).
    #[error("trust server refused {file}: {reason}")]
    Refused { file: String, reason: String },
}

pub trait MetadataSource: Send + Sync {
    /// Fetches `/v2/<gun>/_trust/tuf/<file>`, where `file` is e.g. `root.json`, `2.root.json`,
    /// `timestamp.json`, `snapshot.<sha256-hex>.json` or `targets/releases.json`, reading at
    /// most `max_len` bytes (aborting with `TooLarge` past it).
    fn fetch<'a>(
        &'a self,
        gun: &'a str,
        file: &'a str,
        max_len: u64,
    ) -> BoxFuture<'a, Result<Bytes, FetchError>>;
}
