//! The Edge API side of the shared test server: [`EdgeServer`] is a
//! `flotta_testing::TestServer` seen through its Edge listener, with the server's
//! state, store and CA at hand and raw JSON requests.

use std::sync::Arc;

use flotta_core::pki::BuiltinCa;
use flotta_server::edge::{EdgeOptions, EdgeState};
use flotta_server::store::{ResourceKind, Store};
use flotta_testing::TestServer;
use serde_json::Value;
use time::OffsetDateTime;

pub use flotta_testing::NAMESPACE;
pub use flotta_testing::identity::{ClientIdentity, foreign_identity};
pub use flotta_testing::messages::{
    enrolment_message, envelope, etag, heartbeat_message, registration_message,
};

/// A whole server in this process, used through its Edge API.
pub struct EdgeServer {
    /// The Edge API's state.
    pub state: EdgeState,
    /// The server's store.
    pub store: Arc<dyn Store>,
    /// The server's CA.
    pub ca: Arc<BuiltinCa>,
    server: TestServer,
}

impl std::ops::Deref for EdgeServer {
    type Target = TestServer;

    fn deref(&self) -> &TestServer {
        &self.server
    }
}

impl EdgeServer {
    /// A server approving enrolments and issuing certificates as `options` say.
    pub async fn start(options: EdgeOptions) -> Self {
        Self::start_on(options, flotta_testing::Database::Sqlite).await
    }

    /// [`EdgeServer::start`] on `database`.
    pub async fn start_on(options: EdgeOptions, database: flotta_testing::Database) -> Self {
        let lifetime = std::time::Duration::try_from(options.certificate_lifetime)
            .expect("a positive certificate lifetime");
        let server = TestServer::builder()
            .database(database)
            .auto_approve(options.auto_approve)
            .cert_lifetime(lifetime)
            .superseded_grace(options.superseded_grace)
            .start()
            .await;
        Self {
            state: server.edge().clone(),
            store: server.store(),
            ca: server.ca().clone(),
            server,
        }
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }

    /// Stops the server and starts it again over the same data.
    pub async fn restart(&mut self) {
        self.server.restart().await;
        self.state = self.server.edge().clone();
        self.store = self.server.store();
    }

    /// The URL of `path` under the Edge API's base path.
    pub fn url(&self, path: &str) -> String {
        self.server.edge_url(path)
    }

    /// A client presenting `identity`, or no certificate.
    pub fn client(&self, identity: Option<&ClientIdentity>) -> reqwest::Client {
        self.server.edge_client(identity)
    }

    pub async fn post(
        &self,
        identity: Option<&ClientIdentity>,
        path: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.client(identity)
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, identity: Option<&ClientIdentity>, path: &str) -> reqwest::Response {
        self.client(identity)
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// Creates the EdgeDevice `id` in [`NAMESPACE`] with `labels` straight in the
    /// store, as the management API does (no certificate serials, so deleting it
    /// revokes nothing).
    pub async fn create_device(&self, id: &str, labels: Value) {
        let body = serde_json::json!({
            "apiVersion": "management.project-flotta.io/v1alpha1",
            "kind": "EdgeDevice",
            "metadata": {"name": id, "namespace": NAMESPACE, "labels": labels},
            "spec": {},
        });
        self.store
            .create(ResourceKind::EdgeDevice, NAMESPACE, id, body)
            .await
            .expect("create device");
    }

    pub async fn device(&self, id: &str) -> Option<flotta_server::store::StoredObject> {
        self.store
            .get(ResourceKind::EdgeDevice, NAMESPACE, id)
            .await
            .expect("get device")
    }
}

/// The common name and organisational unit of `identity`'s certificate.
pub fn common_name(identity: &ClientIdentity) -> (Option<String>, Option<String>) {
    identity.subject()
}

/// Issues a device certificate through the CSR policy, valid from `now` for `lifetime`.
pub fn issue_device(
    ca: &BuiltinCa,
    id: &str,
    namespace: &str,
    now: OffsetDateTime,
    lifetime: time::Duration,
) -> ClientIdentity {
    flotta_testing::identity::issue_device(ca, id, namespace, now, lifetime)
}
