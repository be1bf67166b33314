//! Resource kinds as the user names them: plural, singular, short names and aliases.

use std::fmt;
use std::str::FromStr;

use flotta_client::ResourceType;
use flotta_core::model::{
    EdgeDevice, EdgeDeviceSet, EdgeDeviceSignedRequest, EdgeWorkload, Resource,
};

/// One of the four flotta resource kinds.
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
}

/// Every name accepted for each kind (compared case-insensitively).
const ALIASES: [(Kind, &[&str]); 4] = [
    (
        Kind::Device,
        &["devices", "device", "edgedevice", "edgedevices", "ed"],
    ),
    (
        Kind::Set,
        &["sets", "set", "edgedeviceset", "edgedevicesets", "eds"],
    ),
    (
        Kind::Workload,
        &[
            "workloads",
            "workload",
            "edgeworkload",
            "edgeworkloads",
            "ew",
        ],
    ),
    (
        Kind::SignedRequest,
        &[
            "edsr",
            "signedrequests",
            "signedrequest",
            "edgedevicesignedrequest",
            "edgedevicesignedrequests",
        ],
    ),
];

impl Kind {
    /// The resource type of this kind.
    pub fn resource_type(self) -> ResourceType {
        match self {
            Kind::Device => ResourceType::of::<EdgeDevice>(),
            Kind::Set => ResourceType::of::<EdgeDeviceSet>(),
            Kind::Workload => ResourceType::of::<EdgeWorkload>(),
            Kind::SignedRequest => ResourceType::of::<EdgeDeviceSignedRequest>(),
        }
    }

    /// The kind whose `kind` field is `kind`.
    pub fn from_kind_field(kind: &str) -> Option<Self> {
        ALIASES
            .iter()
            .map(|(k, _)| *k)
            .find(|k| k.resource_type().kind == kind)
    }

    /// Lower-case plural for messages, e.g. `edgedevicesignedrequests` (the URL
    /// plural of signed requests is singular, as in Flotta).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Device => "edgedevices",
            Kind::Set => "edgedevicesets",
            Kind::Workload => "edgeworkloads",
            Kind::SignedRequest => "edgedevicesignedrequests",
        }
    }

    /// Lower-case singular used in `kind/name` output, e.g. `edgedevice`.
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Device => EdgeDevice::SINGULAR,
            Kind::Set => EdgeDeviceSet::SINGULAR,
            Kind::Workload => EdgeWorkload::SINGULAR,
            Kind::SignedRequest => EdgeDeviceSignedRequest::SINGULAR,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.resource_type().kind)
    }
}

/// A kind name that names no flotta resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown resource kind {0:?} (expected devices, sets, workloads or edsr, or one of their aliases: ed, edgedevice, edgedeviceset, ew, edgeworkload, signedrequests)"
)]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        ALIASES
            .iter()
            .find(|(_, names)| names.contains(&lower.as_str()))
            .map(|(kind, _)| *kind)
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
        for (kind, names) in ALIASES {
            for name in names {
                assert_eq!(name.parse::<Kind>(), Ok(kind), "{name}");
                assert_eq!(name.to_uppercase().parse::<Kind>(), Ok(kind), "{name}");
            }
        }
        assert!("pods".parse::<Kind>().is_err());
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
        assert!(parse_reference("pods/x", None).is_err());
        assert!(parse_reference("device/", None).is_err());
    }
}
