//! Notary v1 / TUF: wire types, canonical JSON, keys and signatures, the update workflow,
//! persisted trusted state, and Docker Content Trust lookup. Verification is pure: the loaders
//! in `roles` take bytes, what is trusted, and `now`; only `update` fetches, through
//! [`source::MetadataSource`].
pub mod canonical;
pub mod cli;
pub mod client;
pub mod errors;
pub mod fetch;
pub mod keys;
pub mod limits;
pub mod lookup;
pub mod pin;
pub mod roles;
pub mod source;
pub mod store;
pub mod update;
pub mod verify;
pub mod wire;

pub use client::{default_roles, Clock, TrustClient, TrustSettings, DEFAULT_ROLES};
pub use errors::{RefusalReason, TrustError};
pub use limits::Limits;
pub use lookup::{TrustedRepo, VerifiedTarget};
pub use pin::{CertPin, TrustPinning};
pub use source::{FetchError, MetadataSource};
