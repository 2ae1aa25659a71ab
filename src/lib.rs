//! trustgate: a registry proxy that enforces signed images.
//!
//! A client (containerd, CRI-O/podman, skopeo, docker) sends
//! `GET/HEAD /v2/<repo>/manifests/<tag>` to trustgate. [`server`] accepts the connection,
//! [`registry`] parses the route (which upstream, which repository, tag or digest) against the
//! distribution-spec grammar, and [`proxy`] orchestrates the request: [`policy`] decides what
//! the image requires (pure), [`trust`] resolves the tag to the digest its publisher signed by
//! verifying Notary v1 / TUF metadata exactly as the Docker client does (pure verification,
//! fetching behind a trait), and [`upstream`] fetches the manifest *by that digest*. The bytes
//! are checked against the signed digest and length before they are served, unchanged, with
//! `Docker-Content-Digest` set to the signed digest. Blobs stream straight through, hashed on
//! the way. [`cache`] keeps verified results and content; [`metrics`] counts outcomes.
#![forbid(unsafe_code)]

pub mod audit;
pub mod cache;
pub mod clientauth;
pub mod config;
pub mod cosign;
pub mod enforce;
pub mod limits;
pub mod metrics;
pub mod notation;
pub mod policy;
pub mod proxy;
pub mod registry;
pub mod server;
pub mod signatures;
pub mod trust;
pub mod upstream;
