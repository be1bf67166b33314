//! `Repository` and `ResourceSync`: fleet definitions kept in git.
//!
//! Field names follow Flight Control's (`spec.url`, `spec.type`;
//! `spec.repository`, `spec.targetRevision`, `spec.path`; `status.observedCommit`,
//! `status.observedGeneration`, `status.conditions` of types `Accessible`,
//! `ResourceParsed` and `Synced`). Beyond Flight Control, credentials are never
//! inline: `spec.secretRef` names a `Secret` in the repository's namespace, and a
//! sync may name a webhook secret and a poll interval. What a sync does with the
//! manifests it reads is decided by [`crate::gitops`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, ObjectMeta, UnknownFields, impl_resource};

/// A git repository that `ResourceSync`s read manifests from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Repository {
    /// Always `management.project-flotta.io/v1alpha1`.
    pub api_version: String,
    /// Always `Repository`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Where the repository is and how to reach it.
    #[serde(default)]
    pub spec: RepositorySpec,
    /// Observed state, written by the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<RepositoryStatus>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

impl_resource!(Repository, RepositorySpec);

/// Where a repository is and how to reach it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepositorySpec {
    /// The repository's URL: `https://`, `http://`, `ssh://`, `git://` or `file://`.
    pub url: String,
    /// The repository type; only `git` is served.
    #[serde(rename = "type", default = "git_type")]
    pub repo_type: String,
    /// A `Secret` in the repository's namespace holding its credentials: `token`
    /// (an HTTPS bearer token), or `username` and `password` (HTTPS basic), or
    /// `ssh-privatekey` (with `known_hosts` to check the server); and `ca.crt`, the
    /// CA bundle an HTTPS server is checked against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectRef>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

fn git_type() -> String {
    "git".to_owned()
}

/// A reference to an object in the referrer's own namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalObjectRef {
    /// The object's name.
    pub name: String,
}

/// What the server last saw of a repository.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryStatus {
    /// `Accessible`: whether the last fetch succeeded, and why not.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Manifests in a repository that the server applies to the sync's namespace and
/// keeps in step with git.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSync {
    /// Always `management.project-flotta.io/v1alpha1`.
    pub api_version: String,
    /// Always `ResourceSync`.
    pub kind: String,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What to read and how often.
    #[serde(default)]
    pub spec: ResourceSyncSpec,
    /// Observed state, written by the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ResourceSyncStatus>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

impl_resource!(ResourceSync, ResourceSyncSpec);

/// What a sync reads and how often.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSyncSpec {
    /// The name of the `Repository` (in the sync's namespace) to read.
    pub repository: String,
    /// A branch, a tag or a commit id.
    pub target_revision: String,
    /// A file, or a directory read recursively (its `.yaml`, `.yml` and `.json`
    /// files), relative to the repository's root; a leading `/` is allowed.
    pub path: String,
    /// How often the repository is polled: a duration such as `30s`, `5m` or `1h`
    /// (default `5m`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_interval: Option<String>,
    /// A `Secret` in the sync's namespace whose `token` key is the shared secret
    /// of the webhook that triggers a sync at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret_ref: Option<LocalObjectRef>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// What the server last did for a sync.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSyncStatus {
    /// The commit whose manifests are applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_commit: Option<String>,
    /// The generation of the spec that commit was synced for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the repository was last read (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
    /// `Accessible` (the repository could be fetched and the revision found),
    /// `ResourceParsed` (every manifest of the commit is valid), `Synced` (every
    /// object was applied).
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// What the last sync did to each object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<SyncedResource>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// What a sync did to one object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SyncedResource {
    /// The object's kind.
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// `created`, `configured`, `unchanged`, `pruned` or `failed`.
    pub outcome: String,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
