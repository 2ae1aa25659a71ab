//! Notary v1 / TUF (Docker Content Trust): wire types, canonical JSON, keys and signatures,
//! the update workflow, persisted trusted state, and DCT lookup.
//!
//! Verification is pure: the loaders in [`roles`] take bytes, what is already trusted and
//! `now`, and return a loaded role or a precise [`TrustError`]; only [`update`] fetches, through
//! [`source::MetadataSource`]. [`TrustClient`] is the entry point:
//! `resolve(gun, tag, roles) -> VerifiedTarget` (a type only this module can construct).
//!
//! # What is verified (the Notary client's rules, `theupdateframework/notary`)
//! - **Signatures** over Notary's canonical JSON of the generic `signed` value (docker/go
//!   canonical: sorted keys, no whitespace, only `"` and `\` escaped), never over typed
//!   structs. One threshold function ([`verify::verify_threshold`]) serves every role: it counts
//!   *distinct key material*, skips unknown keyids and bad signatures, refuses a key listed
//!   under an id its content does not hash to. Key types `ecdsa`, `ecdsa-x509`, `ed25519`,
//!   `rsa`, `rsa-x509`; methods `ecdsa` (P-256/P-384, raw r‖s over SHA-256), `eddsa`,
//!   `rsapss`, `rsapkcs1v15`, `pycrypto-pkcs#1 pss` (RSA 2048..=8192); a method foreign to the
//!   key type never verifies. Crypto is ring's.
//! - **Order**: root → timestamp (always fetched) → snapshot (by hash, exactly the bytes the
//!   timestamp records) → targets (exactly the bytes the snapshot records) → delegations
//!   (parents first, only those the snapshot lists). Per role: checksum → signatures →
//!   structure → version ≥ last trusted (rollback) → expiry (freeze).
//! - **Delegations**: names `^[-a-z0-9_/]+$`, < 256 chars, direct children of their parent; a
//!   child's paths are cut to those within its parent's; a target counts only within its
//!   role's paths. An expired or under-threshold delegation is skipped (its tags then refuse
//!   with that reason); any other fault fails the update, including a parent listing a child
//!   with threshold < 1, an undefined keyid or twice, and a child certificate key that is
//!   SHA-1-signed, RSA < 2048 or has an inverted window ([`delegation::check_delegations`],
//!   [`delegation::delegation_authority`]). `max_delegations` counts skipped roles too.
//! - **Slow retrieval**: one deadline for a whole update ([`Limits::update_deadline`]).
//! - **Fast-forward recovery** ([`floors`]): a role's version floor drops only when its keys
//!   were replaced so that the stored copy no longer verifies.
//! - **Sizes**: every download is bounded ([`Limits`]): root 2 MiB, timestamp 1 MiB, others by
//!   the length their parent records, and a byte budget per update.
//! - **DCT lookup**: a tag is trusted from `targets/releases`, then `targets` (configurable);
//!   found only in another delegation it is refused (`SignedOnlyByOtherRole`), as `docker pull`
//!   does. The digest is `sha256:` + hex of the target's sha256.
//!
//! # How trust is pinned
//! The first root seen for a GUN must carry X.509 root certificates: a PEM bundle with exactly
//! one leaf, first; CN = the GUN (or a `prefix*` CN); valid now, notBefore up to a day ahead;
//! not SHA-1-signed; RSA ≥ 2048 ([`certrules`]). [`TrustPinning`] then decides which of them
//! may vouch for it, in Notary's order: `certs[GUN]`, else the longest `certs["prefix*"]` (pins
//! are root keyids or certificate DER, e.g. from `--root-cert`), else a CA for the longest GUN
//! prefix, from which a path through the bundle's CA certificates must validate ([`capath`],
//! rustls-webpki), else trust on first use unless `disable_tofu`. Once trusted, the root is
//! stored and is itself the pin: a newer root is accepted only if a threshold of the previous
//! root's certificates *and* of its own valid certificates signed it, walking `<v>.root.json`
//! one version at a time. The stored root's certificates must stay valid: once they expire the
//! GUN is refused, as Notary's `bootstrapClient` fails hard. As in Notary, configured pins are
//! not consulted again while the stored root is unexpired; when it has expired, they apply to
//! the roots it rotates to (`BootstrapNewBuilderWithNewTrustpin`). Re-pinning a GUN that is
//! already trusted otherwise means removing its state file.
//!
//! # State
//! Per GUN, one JSON file under the state directory ([`store`]), replaced atomically: the
//! trusted root, the highest version ever accepted per role, the last verified bytes (used,
//! re-verified and only while unexpired, when the trust server is unreachable or answers 404
//! — Notary's rule for cached data), and tags a role dropped (reported as revoked). A restart
//! therefore resets neither pins nor versions.
pub mod canonical;
pub mod capath;
pub mod certrules;
pub mod cli;
pub mod client;
pub mod delegation;
pub mod errors;
pub mod expiry;
pub mod fetch;
pub mod floors;
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

pub use client::{
    default_roles, Clock, TrustClient, TrustSettings, DEFAULT_NEGATIVE_TTL, DEFAULT_ROLES,
    MAX_SLOTS,
};
pub use errors::{RefusalReason, TrustError};
pub use limits::Limits;
pub use lookup::{TrustedRepo, VerifiedTarget};
pub use pin::{CertPin, TrustPinning};
pub use source::{FetchError, MetadataSource};
