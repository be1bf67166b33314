//! The shared set-up of the flotta-rs integration tests.
//!
//! One [`TestServer`] runs the real server (`flotta_server::app::start`) in the test's
//! process: both listeners on loopback port 0, real rustls with mutual TLS on the Edge
//! listener, the built-in CA in a temporary data directory, and SQLite there or a
//! fresh PostgreSQL database ([`Database`]). Around it: identities minted from that CA
//! ([`identity`]), the Edge API's JSON messages ([`messages`]), agents and clients with
//! timers quick enough for tests ([`quick`]) and run in tasks ([`agent`]), the PostgreSQL test cluster
//! ([`postgres`]), a real Prometheus for the metrics tests ([`prometheus`]), real podman in namespaces of
//! the test ([`podman`]) and one polling helper for conditions that have no signal
//! ([`eventually`]).
//!
//! The crate sits above every other crate of the workspace and is only ever a
//! dev-dependency, so the server's own dependencies stay as they are.

pub mod agent;
pub mod ansible;
pub mod git;
pub mod identity;
pub mod keycloak;
pub mod messages;
pub mod podman;
pub mod postgres;
pub mod prometheus;
pub mod quick;
pub mod s3;
mod server;
pub mod syslog;
mod wait;

pub use identity::ClientIdentity;
pub use server::{Database, TestServer, TestServerBuilder, client_trusting, test_config};
pub use wait::{PATIENCE, eventually, eventually_within, retry_on_conflict};

/// The namespace test devices land in.
pub const NAMESPACE: &str = "default";
