//! Notary v1 / TUF: wire types, canonical JSON, keys and signatures, the update workflow,
//! persisted trusted state, and Docker Content Trust lookup. Verification is pure.
pub mod fetch;
pub mod source;
