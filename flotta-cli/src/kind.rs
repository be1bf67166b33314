//! Resource kinds as the user names them. Every name (plural, singular, short
//! names, aliases) comes from core's kind table ([`flotta_core::kind`]); this module
//! only gives the command line its own short variant names.

use std::fmt;
use std::str::FromStr;

use flotta_client::ResourceType;
use flotta_core::kind::ResourceKind;

/// One of the resource kinds the server serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `EdgeDevice`.
    Device,
    /// `EdgeDeviceSet`.
    Set,
    /// `EdgeWorkload`.
    Workload,
    /// `EdgeDeviceSignedRequest`.
    SignedRequest,
    /// `EdgeConfig` (Ansible playbooks for the devices labelled with its name).
    EdgeConfig,
    /// `PlaybookExecution` (one run of an `EdgeConfig`'s playbook on one device).
    PlaybookExecution,
    /// `Repository` (a git repository that `ResourceSync`s read).
    Repository,
    /// `ResourceSync` (objects applied from a path of a repository).
    ResourceSync,
    /// Kubernetes `v1` `Secret`.
    Secret,
    /// Kubernetes `v1` `ConfigMap`.
    ConfigMap,
    /// `Event` (Kubernetes core `v1`, read-only).
    Event,
    /// RBAC `Role`.
    Role,
    /// RBAC `RoleBinding`.
    RoleBinding,
    /// RBAC `ClusterRole`.
    ClusterRole,
    /// RBAC `ClusterRoleBinding`.
    ClusterRoleBinding,
}

impl From<ResourceKind> for Kind {
    fn from(kind: ResourceKind) -> Self {
        match kind {
            ResourceKind::EdgeDevice => Kind::Device,
            ResourceKind::EdgeDeviceSet => Kind::Set,
            ResourceKind::EdgeWorkload => Kind::Workload,
            ResourceKind::EdgeDeviceSignedRequest => Kind::SignedRequest,
            ResourceKind::EdgeConfig => Kind::EdgeConfig,
            ResourceKind::PlaybookExecution => Kind::PlaybookExecution,
            ResourceKind::Repository => Kind::Repository,
            ResourceKind::ResourceSync => Kind::ResourceSync,
            ResourceKind::Secret => Kind::Secret,
            ResourceKind::ConfigMap => Kind::ConfigMap,
            ResourceKind::Event => Kind::Event,
            ResourceKind::Role => Kind::Role,
            ResourceKind::RoleBinding => Kind::RoleBinding,
            ResourceKind::ClusterRole => Kind::ClusterRole,
            ResourceKind::ClusterRoleBinding => Kind::ClusterRoleBinding,
        }
    }
}

impl Kind {
    /// The resource type of this kind (its row of the kind table).
    pub fn resource_type(self) -> ResourceType {
        match self {
            Kind::Device => ResourceKind::EdgeDevice,
            Kind::Set => ResourceKind::EdgeDeviceSet,
            Kind::Workload => ResourceKind::EdgeWorkload,
            Kind::SignedRequest => ResourceKind::EdgeDeviceSignedRequest,
            Kind::EdgeConfig => ResourceKind::EdgeConfig,
            Kind::PlaybookExecution => ResourceKind::PlaybookExecution,
            Kind::Repository => ResourceKind::Repository,
            Kind::ResourceSync => ResourceKind::ResourceSync,
            Kind::Secret => ResourceKind::Secret,
            Kind::ConfigMap => ResourceKind::ConfigMap,
            Kind::Event => ResourceKind::Event,
            Kind::Role => ResourceKind::Role,
            Kind::RoleBinding => ResourceKind::RoleBinding,
            Kind::ClusterRole => ResourceKind::ClusterRole,
            Kind::ClusterRoleBinding => ResourceKind::ClusterRoleBinding,
        }
    }

    /// The kind whose `kind` field is `kind`.
    pub fn from_kind_field(kind: &str) -> Option<Self> {
        ResourceKind::from_kind(kind).map(Kind::from)
    }

    /// Lower-case plural for messages, e.g. `edgedevicesignedrequests`.
    pub fn plural(self) -> &'static str {
        self.resource_type().plural()
    }

    /// Lower-case singular used in `kind/name` output, e.g. `edgedevice`.
    pub fn singular(self) -> &'static str {
        self.resource_type().singular()
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.resource_type().as_str())
    }
}

/// A kind name that names no flotta resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown resource kind {0:?} (expected {names})", names = accepted_names())]
pub struct UnknownKind(pub String);

/// The accepted names for the error message: each kind's plural, then its short
/// names and aliases in parentheses.
fn accepted_names() -> String {
    ResourceKind::ALL
        .iter()
        .map(|kind| {
            let info = kind.info();
            let others: Vec<&str> = info
                .short_names
                .iter()
                .chain(info.aliases)
                .copied()
                .collect();
            if others.is_empty() {
                info.plural.to_owned()
            } else {
                format!("{} ({})", info.plural, others.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ResourceKind::lookup(s)
            .map(Kind::from)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

/// `KIND/NAME` (or a bare `NAME` when `default` is given).
pub fn parse_reference(text: &str, default: Option<Kind>) -> Result<(Kind, String), String> {
    match text.split_once('/') {
        Some((kind, name)) if !name.is_empty() && !name.contains('/') => Ok((
            kind.parse().map_err(|e: UnknownKind| e.to_string())?,
            name.to_owned(),
        )),
        Some(_) => Err(format!("invalid reference {text:?}: expected KIND/NAME")),
        None => match default {
            Some(kind) if !text.is_empty() => Ok((kind, text.to_owned())),
            _ => Err(format!("invalid reference {text:?}: expected KIND/NAME")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alias_resolves_to_its_kind() {
        let expected = [
            (
                Kind::Device,
                ["devices", "device", "edgedevice", "edgedevices", "ed"],
            ),
            (
                Kind::Set,
                ["sets", "set", "edgedeviceset", "edgedevicesets", "eds"],
            ),
            (
                Kind::Workload,
                [
                    "workloads",
                    "workload",
                    "edgeworkload",
                    "edgeworkloads",
                    "ew",
                ],
            ),
            (
                Kind::SignedRequest,
                [
                    "edsr",
                    "signedrequests",
                    "signedrequest",
                    "edgedevicesignedrequest",
                    "edgedevicesignedrequests",
                ],
            ),
        ];
        for (kind, names) in expected {
            for name in names {
                assert_eq!(name.parse::<Kind>(), Ok(kind), "{name}");
                assert_eq!(name.to_uppercase().parse::<Kind>(), Ok(kind), "{name}");
            }
        }
        assert_eq!("pods".parse::<Kind>(), Err(UnknownKind("pods".into())));
        assert_eq!(
            UnknownKind("pods".into()).to_string(),
            "unknown resource kind \"pods\" (expected edgedevices (ed, devices, device), \
             edgedevicesets (eds, sets, set), edgeworkloads (ew, workloads, workload), \
             edgedevicesignedrequests (edsr, signedrequests, signedrequest), \
             edgeconfigs (configs), playbookexecutions (executions, playbooks), \
             repositories (repo, repos), resourcesyncs (syncs, sync), secrets, \
             configmaps (cm), events (ev), roles, rolebindings, clusterroles, \
             clusterrolebindings)"
        );
        assert_eq!("secrets".parse::<Kind>(), Ok(Kind::Secret));
        assert_eq!("repo".parse::<Kind>(), Ok(Kind::Repository));
        assert_eq!("resourcesyncs".parse::<Kind>(), Ok(Kind::ResourceSync));
        assert_eq!("cm".parse::<Kind>(), Ok(Kind::ConfigMap));
        for name in ["events", "event", "ev", "EV"] {
            assert_eq!(name.parse::<Kind>(), Ok(Kind::Event), "{name}");
        }
        assert_eq!(Kind::from_kind_field("EdgeWorkload"), Some(Kind::Workload));
    }

    #[test]
    fn references_need_a_kind_unless_one_is_implied() {
        assert_eq!(
            parse_reference("edsr/edge-01", None),
            Ok((Kind::SignedRequest, "edge-01".into()))
        );
        assert_eq!(
            parse_reference("edge-01", Some(Kind::SignedRequest)),
            Ok((Kind::SignedRequest, "edge-01".into()))
        );
        assert!(parse_reference("edge-01", None).is_err());
        assert_eq!(
            parse_reference("pods/x", None),
            Err(UnknownKind("pods".into()).to_string())
        );
        assert!(parse_reference("device/", None).is_err());
    }
}
