//! The resource-kind table: every fact about the kinds the API serves (names, plurals,
//! short names, aliases, scope, API group and version) in one place: the four flotta
//! kinds, Flotta's Ansible kinds `EdgeConfig` and `PlaybookExecution`, the GitOps
//! kinds `Repository` and `ResourceSync`, the Kubernetes core `v1` kinds `Secret`, `ConfigMap` and `Event`, served
//! where kubectl expects them (`/api/v1`), and the Kubernetes RBAC kinds `Role`,
//! `RoleBinding`, `ClusterRole` and `ClusterRoleBinding`
//! (`/apis/rbac.authorization.k8s.io/v1`).
//!
//! The model's [`Resource`](crate::model::Resource) constants, the generated CRDs,
//! the client's URL paths, the server's routes and discovery, the command line's kind
//! names and both bindings read this table; nothing else restates it. Each kind's
//! field-selector whitelist is reached from the same key,
//! [`ResourceKind::fields`] (it lives beside the code that reads
//! those fields).
//!
//! This module is a leaf: it depends on nothing else in the crate.
//!
//! ```
//! use flotta_core::kind::ResourceKind;
//!
//! let kind = ResourceKind::lookup("edsr").expect("a short name");
//! assert_eq!(kind, ResourceKind::EdgeDeviceSignedRequest);
//! assert_eq!("EdgeDeviceSignedRequest".parse(), Ok(kind));
//! assert_eq!(kind.plural(), "edgedevicesignedrequests");
//! assert_eq!(kind.crd_plural(), "edgedevicesignedrequest");
//! assert_eq!(ResourceKind::lookup("ew"), Some(ResourceKind::EdgeWorkload));
//! ```

use std::fmt;
use std::str::FromStr;

/// API group of every flotta resource.
pub const GROUP: &str = "management.project-flotta.io";
/// API version of every flotta resource.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` value of every flotta resource: `GROUP/VERSION`.
pub const API_VERSION: &str = "management.project-flotta.io/v1alpha1";
/// Group of the Kubernetes core kinds (`Secret`, `ConfigMap`): the empty group.
pub const CORE_GROUP: &str = "";
/// Version of the Kubernetes core kinds.
pub const CORE_VERSION: &str = "v1";
/// Group of the Kubernetes RBAC kinds (`Role`, `RoleBinding`, `ClusterRole`,
/// `ClusterRoleBinding`).
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
/// Version of the Kubernetes RBAC kinds.
pub const RBAC_VERSION: &str = "v1";
/// `apiVersion` of the Kubernetes RBAC kinds: `RBAC_GROUP/RBAC_VERSION`.
pub const RBAC_API_VERSION: &str = "rbac.authorization.k8s.io/v1";

/// One of the flotta resource kinds; [`ResourceKind::info`] tells everything about it.
///
/// Not `#[non_exhaustive]`: the server and the bindings match on it exhaustively, so
/// that a new kind is a compile error wherever it needs handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    /// `EdgeDevice`.
    EdgeDevice,
    /// `EdgeDeviceSet`.
    EdgeDeviceSet,
    /// `EdgeWorkload`.
    EdgeWorkload,
    /// `EdgeDeviceSignedRequest`.
    EdgeDeviceSignedRequest,
    /// `EdgeConfig`: Ansible playbooks for the devices labelled with its name.
    EdgeConfig,
    /// `PlaybookExecution`: one run of an `EdgeConfig`'s playbook on one device.
    PlaybookExecution,
    /// `Repository`: a git repository that `ResourceSync`s read.
    Repository,
    /// `ResourceSync`: manifests in a repository kept applied (GitOps).
    ResourceSync,
    /// Kubernetes `v1` `Secret`, encrypted at rest by the server.
    Secret,
    /// Kubernetes `v1` `ConfigMap`.
    ConfigMap,
    /// Kubernetes `v1` `Event`: something that happened to an object, recorded by
    /// the server (read-only through the API).
    Event,
    /// Kubernetes `rbac.authorization.k8s.io/v1` `Role`: rules in one namespace.
    Role,
    /// Kubernetes `rbac.authorization.k8s.io/v1` `RoleBinding`: grants a `Role` or a
    /// `ClusterRole` to subjects within one namespace.
    RoleBinding,
    /// Kubernetes `rbac.authorization.k8s.io/v1` `ClusterRole`: rules usable in
    /// every namespace and on cluster-scoped resources (cluster-scoped).
    ClusterRole,
    /// Kubernetes `rbac.authorization.k8s.io/v1` `ClusterRoleBinding`: grants a
    /// `ClusterRole` to subjects everywhere (cluster-scoped).
    ClusterRoleBinding,
}

/// What the API, the CRDs and the command line call one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct KindInfo {
    /// The kind this row describes.
    pub kind: ResourceKind,
    /// The `kind` field, e.g. `EdgeDevice`.
    pub name: &'static str,
    /// The plural of URL paths, discovery and messages, e.g. `edgedevices`.
    pub plural: &'static str,
    /// `names.plural` of Flotta's CRD. It differs from [`KindInfo::plural`] only for
    /// signed requests, whose CRD Flotta named in the singular; the server serves
    /// both spellings, so Flotta's tools keep working.
    pub crd_plural: &'static str,
    /// The singular, e.g. `edgedevice` (`kind/name` output, CRD `names.singular`).
    pub singular: &'static str,
    /// Short names, in the CRD's `names.shortNames` and accepted by the command line.
    pub short_names: &'static [&'static str],
    /// Further names the command line accepts (not in the CRD), e.g. `devices`.
    pub aliases: &'static [&'static str],
    /// Categories of discovery (`kubectl get flotta` lists every kind in the
    /// `flotta` category).
    pub categories: &'static [&'static str],
    /// Whether objects of the kind live in a namespace.
    pub namespaced: bool,
    /// API group, e.g. `management.project-flotta.io`.
    pub group: &'static str,
    /// API version, e.g. `v1alpha1`.
    pub version: &'static str,
    /// Whether only the server writes objects of the kind (`Event`): the API serves
    /// them to read (get, list, watch) and refuses every write with 405.
    pub server_written: bool,
}

const EDGE_DEVICE: KindInfo = KindInfo {
    kind: ResourceKind::EdgeDevice,
    name: "EdgeDevice",
    plural: "edgedevices",
    crd_plural: "edgedevices",
    singular: "edgedevice",
    short_names: &["ed"],
    aliases: &["devices", "device"],
    categories: &["flotta"],
    namespaced: true,
    group: GROUP,
    version: VERSION,
    server_written: false,
};

const EDGE_DEVICE_SET: KindInfo = KindInfo {
    kind: ResourceKind::EdgeDeviceSet,
    name: "EdgeDeviceSet",
    plural: "edgedevicesets",
    crd_plural: "edgedevicesets",
    singular: "edgedeviceset",
    short_names: &["eds"],
    aliases: &["sets", "set"],
    categories: &["flotta"],
    namespaced: true,
    group: GROUP,
    version: VERSION,
    server_written: false,
};

const EDGE_WORKLOAD: KindInfo = KindInfo {
    kind: ResourceKind::EdgeWorkload,
    name: "EdgeWorkload",
    plural: "edgeworkloads",
    crd_plural: "edgeworkloads",
    singular: "edgeworkload",
    short_names: &["ew"],
    aliases: &["workloads", "workload"],
    categories: &["flotta"],
    namespaced: true,
    group: GROUP,
    version: VERSION,
    server_written: false,
};

const EDGE_DEVICE_SIGNED_REQUEST: KindInfo = KindInfo {
    kind: ResourceKind::EdgeDeviceSignedRequest,
    name: "EdgeDeviceSignedRequest",
    plural: "edgedevicesignedrequests",
    crd_plural: "edgedevicesignedrequest",
    singular: "edgedevicesignedrequest",
    // As in Flotta's CRD.
    short_names: &["edsr"],
    aliases: &["signedrequests", "signedrequest"],
    categories: &["flotta"],
    namespaced: true,
    group: GROUP,
    version: VERSION,
    server_written: false,
};

const EDGE_CONFIG: KindInfo = KindInfo {
    kind: ResourceKind::EdgeConfig,
    name: "EdgeConfig",
    plural: "edgeconfigs",
    crd_plural: "edgeconfigs",
    singular: "edgeconfig",
    short_names: &[],
    aliases: &["configs"],
    categories: &["flotta"],
    namespaced: true,
    group: GROUP,
    version: VERSION,
    server_written: false,
};

const PLAYBOOK_EXECUTION: KindInfo = KindInfo {
    kind: ResourceKind::PlaybookExecution,
    name: "PlaybookExecution",
    plural: "playbookexecutions",
    crd_plural: "playbookexecutions",
    singular: "playbookexecution",
    short_names: &[],
    aliases: &["executions", "playbooks"],
    categories: &["flotta"],
    namespaced: true,
    group: GROUP,
    version: VERSION,
    server_written: false,
};

const REPOSITORY: KindInfo = KindInfo {
    kind: ResourceKind::Repository,
    name: "Repository",
    plural: "repositories",
    crd_plural: "repositories",
    singular: "repository",
    short_names: &["repo"],
    aliases: &["repos"],
    categories: &["flotta"],
    namespaced: true,
    group: GROUP,
    version: VERSION,
    server_written: false,
};

const RESOURCE_SYNC: KindInfo = KindInfo {
    kind: ResourceKind::ResourceSync,
    name: "ResourceSync",
    plural: "resourcesyncs",
    crd_plural: "resourcesyncs",
    singular: "resourcesync",
    // Not `rs`: kubectl users read that as ReplicaSets.
    short_names: &[],
    aliases: &["syncs", "sync"],
    categories: &["flotta"],
    namespaced: true,
    group: GROUP,
    version: VERSION,
    server_written: false,
};

const SECRET: KindInfo = KindInfo {
    kind: ResourceKind::Secret,
    name: "Secret",
    plural: "secrets",
    crd_plural: "secrets",
    singular: "secret",
    short_names: &[],
    aliases: &[],
    categories: &[],
    namespaced: true,
    group: CORE_GROUP,
    version: CORE_VERSION,
    server_written: false,
};

const CONFIG_MAP: KindInfo = KindInfo {
    kind: ResourceKind::ConfigMap,
    name: "ConfigMap",
    plural: "configmaps",
    crd_plural: "configmaps",
    singular: "configmap",
    // As kubectl.
    short_names: &["cm"],
    aliases: &[],
    categories: &[],
    namespaced: true,
    group: CORE_GROUP,
    version: CORE_VERSION,
    server_written: false,
};

const EVENT: KindInfo = KindInfo {
    kind: ResourceKind::Event,
    name: "Event",
    plural: "events",
    crd_plural: "events",
    singular: "event",
    // As kubectl.
    short_names: &["ev"],
    aliases: &[],
    categories: &[],
    namespaced: true,
    group: CORE_GROUP,
    version: CORE_VERSION,
    server_written: true,
};

const ROLE: KindInfo = KindInfo {
    kind: ResourceKind::Role,
    name: "Role",
    plural: "roles",
    crd_plural: "roles",
    singular: "role",
    short_names: &[],
    aliases: &[],
    categories: &[],
    namespaced: true,
    group: RBAC_GROUP,
    version: RBAC_VERSION,
    server_written: false,
};

const ROLE_BINDING: KindInfo = KindInfo {
    kind: ResourceKind::RoleBinding,
    name: "RoleBinding",
    plural: "rolebindings",
    crd_plural: "rolebindings",
    singular: "rolebinding",
    short_names: &[],
    aliases: &[],
    categories: &[],
    namespaced: true,
    group: RBAC_GROUP,
    version: RBAC_VERSION,
    server_written: false,
};

const CLUSTER_ROLE: KindInfo = KindInfo {
    kind: ResourceKind::ClusterRole,
    name: "ClusterRole",
    plural: "clusterroles",
    crd_plural: "clusterroles",
    singular: "clusterrole",
    short_names: &[],
    aliases: &[],
    categories: &[],
    namespaced: false,
    group: RBAC_GROUP,
    version: RBAC_VERSION,
    server_written: false,
};

const CLUSTER_ROLE_BINDING: KindInfo = KindInfo {
    kind: ResourceKind::ClusterRoleBinding,
    name: "ClusterRoleBinding",
    plural: "clusterrolebindings",
    crd_plural: "clusterrolebindings",
    singular: "clusterrolebinding",
    short_names: &[],
    aliases: &[],
    categories: &[],
    namespaced: false,
    group: RBAC_GROUP,
    version: RBAC_VERSION,
    server_written: false,
};

/// The table: one row per kind, in the order of [`ResourceKind::ALL`].
pub static KINDS: [KindInfo; 15] = [
    EDGE_DEVICE,
    EDGE_DEVICE_SET,
    EDGE_WORKLOAD,
    EDGE_DEVICE_SIGNED_REQUEST,
    EDGE_CONFIG,
    PLAYBOOK_EXECUTION,
    REPOSITORY,
    RESOURCE_SYNC,
    SECRET,
    CONFIG_MAP,
    EVENT,
    ROLE,
    ROLE_BINDING,
    CLUSTER_ROLE,
    CLUSTER_ROLE_BINDING,
];

/// A Kubernetes kind the API serves without storing it: its objects are derived
/// from the stored ones (see [`NAMESPACE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DerivedKind {
    /// The `kind` field, e.g. `Namespace`.
    pub name: &'static str,
    /// The plural of URL paths and discovery, e.g. `namespaces`.
    pub plural: &'static str,
    /// The singular, e.g. `namespace`.
    pub singular: &'static str,
    /// Short names, as kubectl's.
    pub short_names: &'static [&'static str],
    /// Whether objects of the kind live in a namespace.
    pub namespaced: bool,
    /// The API verbs served, as discovery lists them.
    pub verbs: &'static [&'static str],
}

/// Kubernetes `v1` `Namespace`, served under `/api/v1/namespaces`: a namespace
/// exists while objects live in it (`default` always does). It is never stored,
/// so it cannot be created; deleting one that still holds objects is refused.
pub const NAMESPACE: DerivedKind = DerivedKind {
    name: "Namespace",
    plural: "namespaces",
    singular: "namespace",
    short_names: &["ns"],
    namespaced: false,
    verbs: &["delete", "get", "list"],
};

impl KindInfo {
    /// Whether the kind is one of flotta's own (group `management.project-flotta.io`,
    /// with a CRD), not a Kubernetes core kind.
    pub const fn is_flotta(&self) -> bool {
        matches!(self.kind.group_of(), KindGroup::Flotta)
    }

    /// Whether the kind is a Kubernetes RBAC kind (group `rbac.authorization.k8s.io`).
    pub const fn is_rbac(&self) -> bool {
        matches!(self.kind.group_of(), KindGroup::Rbac)
    }

    /// The `apiVersion` of objects of the kind: `GROUP/VERSION`, `v1` for the core
    /// kinds, `rbac.authorization.k8s.io/v1` for the RBAC kinds.
    pub const fn api_version(&self) -> &'static str {
        match self.kind.group_of() {
            KindGroup::Flotta => API_VERSION,
            KindGroup::Core => CORE_VERSION,
            KindGroup::Rbac => RBAC_API_VERSION,
        }
    }
}

/// The API groups of the kind table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KindGroup {
    Flotta,
    Core,
    Rbac,
}

impl ResourceKind {
    const fn group_of(self) -> KindGroup {
        match self {
            ResourceKind::EdgeDevice
            | ResourceKind::EdgeDeviceSet
            | ResourceKind::EdgeWorkload
            | ResourceKind::EdgeDeviceSignedRequest
            | ResourceKind::EdgeConfig
            | ResourceKind::PlaybookExecution
            | ResourceKind::Repository
            | ResourceKind::ResourceSync => KindGroup::Flotta,
            ResourceKind::Secret | ResourceKind::ConfigMap | ResourceKind::Event => KindGroup::Core,
            ResourceKind::Role
            | ResourceKind::RoleBinding
            | ResourceKind::ClusterRole
            | ResourceKind::ClusterRoleBinding => KindGroup::Rbac,
        }
    }
}

impl ResourceKind {
    /// Every kind, in a fixed order.
    pub const ALL: [ResourceKind; 15] = [
        ResourceKind::EdgeDevice,
        ResourceKind::EdgeDeviceSet,
        ResourceKind::EdgeWorkload,
        ResourceKind::EdgeDeviceSignedRequest,
        ResourceKind::EdgeConfig,
        ResourceKind::PlaybookExecution,
        ResourceKind::Repository,
        ResourceKind::ResourceSync,
        ResourceKind::Secret,
        ResourceKind::ConfigMap,
        ResourceKind::Event,
        ResourceKind::Role,
        ResourceKind::RoleBinding,
        ResourceKind::ClusterRole,
        ResourceKind::ClusterRoleBinding,
    ];

    /// The four Kubernetes RBAC kinds, in the order of [`ResourceKind::ALL`].
    pub const RBAC: [ResourceKind; 4] = [
        ResourceKind::Role,
        ResourceKind::RoleBinding,
        ResourceKind::ClusterRole,
        ResourceKind::ClusterRoleBinding,
    ];

    /// The flotta kinds (those with a CRD), in the order of [`ResourceKind::ALL`]:
    /// Flotta's four, its Ansible kinds `EdgeConfig` and `PlaybookExecution`, then the
    /// GitOps kinds `Repository` and `ResourceSync`.
    pub const FLOTTA: [ResourceKind; 8] = [
        ResourceKind::EdgeDevice,
        ResourceKind::EdgeDeviceSet,
        ResourceKind::EdgeWorkload,
        ResourceKind::EdgeDeviceSignedRequest,
        ResourceKind::EdgeConfig,
        ResourceKind::PlaybookExecution,
        ResourceKind::Repository,
        ResourceKind::ResourceSync,
    ];

    /// The kind's row of the table.
    pub const fn info(self) -> &'static KindInfo {
        match self {
            ResourceKind::EdgeDevice => &EDGE_DEVICE,
            ResourceKind::EdgeDeviceSet => &EDGE_DEVICE_SET,
            ResourceKind::EdgeWorkload => &EDGE_WORKLOAD,
            ResourceKind::EdgeDeviceSignedRequest => &EDGE_DEVICE_SIGNED_REQUEST,
            ResourceKind::EdgeConfig => &EDGE_CONFIG,
            ResourceKind::PlaybookExecution => &PLAYBOOK_EXECUTION,
            ResourceKind::Repository => &REPOSITORY,
            ResourceKind::ResourceSync => &RESOURCE_SYNC,
            ResourceKind::Secret => &SECRET,
            ResourceKind::ConfigMap => &CONFIG_MAP,
            ResourceKind::Event => &EVENT,
            ResourceKind::Role => &ROLE,
            ResourceKind::RoleBinding => &ROLE_BINDING,
            ResourceKind::ClusterRole => &CLUSTER_ROLE,
            ResourceKind::ClusterRoleBinding => &CLUSTER_ROLE_BINDING,
        }
    }

    /// The `kind` field, e.g. `EdgeDevice` (also what the server's database stores).
    pub const fn as_str(self) -> &'static str {
        self.info().name
    }

    /// The plural of URL paths, e.g. `edgedevices`.
    pub const fn plural(self) -> &'static str {
        self.info().plural
    }

    /// `names.plural` of Flotta's CRD (see [`KindInfo::crd_plural`]).
    pub const fn crd_plural(self) -> &'static str {
        self.info().crd_plural
    }

    /// The singular, e.g. `edgedevice`.
    pub const fn singular(self) -> &'static str {
        self.info().singular
    }

    /// Short names, e.g. `["edsr"]`.
    pub const fn short_names(self) -> &'static [&'static str] {
        self.info().short_names
    }

    /// Discovery categories, e.g. `["flotta"]`.
    pub const fn categories(self) -> &'static [&'static str] {
        self.info().categories
    }

    /// Whether objects of the kind live in a namespace.
    pub const fn namespaced(self) -> bool {
        self.info().namespaced
    }

    /// Every kind (the same as [`ResourceKind::ALL`]).
    pub fn all() -> [ResourceKind; 15] {
        Self::ALL
    }

    /// Whether this is one of flotta's own kinds (see [`KindInfo::is_flotta`]).
    pub const fn is_flotta(self) -> bool {
        self.info().is_flotta()
    }

    /// Whether this is a Kubernetes RBAC kind (see [`KindInfo::is_rbac`]).
    pub const fn is_rbac(self) -> bool {
        self.info().is_rbac()
    }

    /// Whether this is a Kubernetes core `v1` kind (`Secret`, `ConfigMap`, `Event`).
    pub const fn is_core(self) -> bool {
        matches!(self.group_of(), KindGroup::Core)
    }

    /// Whether only the server writes objects of the kind (see
    /// [`KindInfo::server_written`]).
    pub const fn server_written(self) -> bool {
        self.info().server_written
    }

    /// The API verbs served on the kind's objects, as discovery lists them: all of
    /// them, or `get`, `list` and `watch` for a kind only the server writes.
    pub const fn verbs(self) -> &'static [&'static str] {
        if self.server_written() {
            &["get", "list", "watch"]
        } else {
            &[
                "create", "delete", "get", "list", "patch", "update", "watch",
            ]
        }
    }

    /// The `apiVersion` field of the kind's objects (see [`KindInfo::api_version`]),
    /// e.g. `v1` for `Event`.
    pub const fn api_version(self) -> &'static str {
        self.info().api_version()
    }

    /// The kind whose `kind` field is exactly `kind`, e.g. `EdgeDevice`.
    pub fn from_kind(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// The kind a URL path segment names: its plural or its CRD plural.
    pub fn from_plural(plural: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.plural() == plural || k.crd_plural() == plural)
    }

    /// Every name the kind answers to on the command line, lower-case: singular,
    /// plurals, short names and aliases.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        let info = self.info();
        [info.singular, info.plural, info.crd_plural]
            .into_iter()
            .chain(info.short_names.iter().copied())
            .chain(info.aliases.iter().copied())
    }

    /// The kind any of its names designates, compared case-insensitively: the kind
    /// field, singular, plurals, short names or aliases.
    pub fn lookup(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|kind| kind.names().any(|n| n == lower))
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that designates no [`ResourceKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown resource kind {0:?}")]
pub struct UnknownResourceKind(pub String);

impl FromStr for ResourceKind {
    type Err = UnknownResourceKind;

    /// Accepts the exact `kind` field only (`EdgeDevice`), as stored and sent;
    /// [`ResourceKind::lookup`] reads the names people type.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_kind(s).ok_or_else(|| UnknownResourceKind(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_the_order_of_all() {
        for (kind, info) in ResourceKind::ALL.into_iter().zip(KINDS.iter()) {
            assert_eq!(kind.info(), info);
            assert_eq!(info.kind, kind);
        }
        assert_eq!(API_VERSION, format!("{GROUP}/{VERSION}"));
    }

    #[test]
    fn every_name_designates_one_kind_only() {
        let mut seen = std::collections::BTreeMap::new();
        for kind in ResourceKind::ALL {
            for name in kind.names().chain([kind.as_str()]) {
                let lower = name.to_ascii_lowercase();
                if let Some(other) = seen.insert(lower.clone(), kind) {
                    assert_eq!(other, kind, "{lower} names two kinds");
                }
                assert_eq!(ResourceKind::lookup(name), Some(kind), "{name}");
                assert_eq!(
                    ResourceKind::lookup(&name.to_uppercase()),
                    Some(kind),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn kinds_and_plurals_round_trip() {
        for kind in ResourceKind::ALL {
            assert_eq!(ResourceKind::from_kind(kind.as_str()), Some(kind));
            assert_eq!(ResourceKind::from_plural(kind.plural()), Some(kind));
            assert_eq!(ResourceKind::from_plural(kind.crd_plural()), Some(kind));
            assert_eq!(kind.to_string(), kind.as_str());
            assert_eq!(kind.as_str().parse::<ResourceKind>(), Ok(kind));
        }
        assert_eq!(ResourceKind::from_kind("edgedevice"), None);
        assert_eq!(ResourceKind::from_plural("pods"), None);
        assert_eq!(
            "pods".parse::<ResourceKind>(),
            Err(UnknownResourceKind("pods".into()))
        );
    }

    #[test]
    fn short_names_are_the_ones_decided() {
        let short: Vec<_> = ResourceKind::ALL
            .into_iter()
            .map(ResourceKind::short_names)
            .collect();
        let expected: [&[&str]; 15] = [
            &["ed"],
            &["eds"],
            &["ew"],
            &["edsr"],
            &[],
            &[],
            &["repo"],
            &[],
            &[],
            &["cm"],
            &["ev"],
            &[],
            &[],
            &[],
            &[],
        ];
        assert_eq!(short, expected);
    }
}
