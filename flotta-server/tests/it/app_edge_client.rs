//! Device-side clients of the Edge listener of a whole server (in-process or the
//! binary), which keeps its PKI in `DATA_DIR/pki`.

use std::path::Path;

use flotta_server::edge::BASE_PATH;
use flotta_testing::identity;

use crate::edge_support::ClientIdentity;

/// An Edge API client trusting `ca_pem` and presenting `identity`.
pub fn device_client(ca_pem: &str, identity: &ClientIdentity) -> reqwest::Client {
    identity::tls_client(ca_pem, Some(identity))
}

/// The URL of an Edge API path on the server whose Edge base URL is `edge_server`.
pub fn edge_url(edge_server: &str, path: &str) -> String {
    format!("{edge_server}{BASE_PATH}{path}")
}

/// Enrols and registers `id` through the Edge listener at `edge_server`
/// (auto-approving) with the fleet registration certificate in `data_dir/pki`;
/// returns the issued device identity.
pub async fn enrol_and_register(
    edge_server: &str,
    ca_pem: &str,
    data_dir: &Path,
    id: &str,
) -> ClientIdentity {
    let registration = identity::registration_identity_in(data_dir);
    identity::enrol_and_register(edge_server, ca_pem, &registration, id).await
}
