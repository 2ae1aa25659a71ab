//! Manifest media types and the `Accept` list sent when a client sends none.

pub const DOCKER_MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Signed schema1: its digest is computed over the payload without the JWS signatures, so
/// "digest = sha256 of the bytes served" cannot hold for it.
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";

/// Sent upstream on manifest requests that carry no `Accept`: without it docker-registry
/// down-converts schema2 to signed schema1 (another digest) and answers an OCI index with 404
/// (measured, see notes/REAL-COMPONENTS.md).
pub const DEFAULT_MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_accept_lists_all_four_modern_types() {
        for t in [
            DOCKER_MANIFEST_V2,
            DOCKER_MANIFEST_LIST,
            OCI_MANIFEST,
            OCI_INDEX,
        ] {
            assert!(DEFAULT_MANIFEST_ACCEPT.split(", ").any(|x| x == t), "{t}");
        }
    }
}
