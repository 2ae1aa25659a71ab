//! trustgate's own verifier pointed at a [`NotaryServer`], and the comparison with what the
//! real notary client reports for the same data.

use std::path::Path;
use std::sync::Arc;

use trustgate::trust::{default_roles, TrustClient, TrustError, TrustSettings, VerifiedTarget};

use super::{ListRow, LookupLine, NotaryCli, NotaryServer};

pub fn trust_client(server: &NotaryServer, state: &Path) -> TrustClient {
    let settings = TrustSettings {
        state_dir: Some(state.to_path_buf()),
        ..TrustSettings::default()
    };
    TrustClient::new(settings, Arc::new(server.metadata_source())).unwrap()
}

/// A trustgate verifier for one server with its own persisted state directory.
pub async fn resolve_with(
    server: &NotaryServer,
    state: &Path,
    gun: &str,
    tag: &str,
    roles: &[String],
) -> Result<VerifiedTarget, TrustError> {
    let client = trust_client(server, state);
    client.resolve(gun, tag, roles).await
}

pub async fn resolve(
    server: &NotaryServer,
    state: &Path,
    gun: &str,
    tag: &str,
) -> Result<VerifiedTarget, TrustError> {
    resolve_with(server, state, gun, tag, &default_roles()).await
}

/// The verdict equals what the real notary client reports for the same tag: `notary lookup`
/// for digest and size, `notary list` for the signing role.
pub fn assert_same_as_notary(cli: &NotaryCli, gun: &str, tag: &str, got: &VerifiedTarget) {
    let line: LookupLine = cli.lookup(gun, tag).expect("notary lookup");
    assert_eq!(got.gun(), gun);
    assert_eq!(got.tag(), tag);
    assert_eq!(got.digest(), line.digest, "digest vs notary lookup");
    assert_eq!(got.length(), line.size, "length vs notary lookup");
    let rows: Vec<ListRow> = cli.list(gun);
    let row = rows
        .iter()
        .find(|r| r.name == tag)
        .expect("tag in notary list");
    assert_eq!(got.role(), row.role, "role vs notary list");
    assert!(!got.keyids().is_empty());
}

/// The `version` of the GUN's current root.json on the server.
pub fn root_version_on_server(server: &NotaryServer, gun: &str) -> u64 {
    let (status, body) = server.get_raw(gun, "root.json");
    assert_eq!(status, 200);
    let root: serde_json::Value = serde_json::from_slice(&body).unwrap();
    root["signed"]["version"].as_u64().unwrap()
}

/// Two `#[tokio::test]`s running `scenario(Flavour)` against each kind of server key.
macro_rules! both_flavours {
    ($scenario:ident, $local:ident, $remote:ident) => {
        #[tokio::test]
        async fn $local() {
            $scenario($crate::support::notary::Flavour::Local).await
        }
        #[tokio::test]
        async fn $remote() {
            $scenario($crate::support::notary::Flavour::Remote).await
        }
    };
}
pub(crate) use both_flavours;
