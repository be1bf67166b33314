#![doc = include_str!("../README.md")]

mod apply;
mod config;
mod edge;
mod error;
mod management;
pub mod oidc;
mod prune;
mod retry;
mod rollout;
mod tls;
mod watch;

pub use apply::{ApplyAction, ApplyOutcome, DryRun, ServerSideApply, parse_documents};
pub use config::{CLIENT_CONFIG_KIND, ClientConfig, ClientConfigError, load_config};
pub use edge::{
    ConfigPoll, EDGE_BASE_PATH, EdgeClient, EdgeClientBuilder, EnrolmentOutcome,
    RegistrationOutcome,
};
pub use error::{ClientError, ClientResult, ErrorKind};
pub use management::{
    API_PREFIX, ApiObject, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, ListParams, ManagementClient,
    ManagementClientBuilder, ObjectList, ResourceType, WriteParams,
};
pub use prune::{ObjectKey, PruneOutcome, prune_candidates, selects};
pub use retry::{Backoff, RetryPolicy};
pub use tls::{Identity, client_config as tls_client_config};
pub use watch::WatchEvent;
