//! `EdgeDeviceSignedRequest` (short name `edsr`): a device's enrolment request,
//! approved by an operator or automatically.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Hardware, ObjectMeta, Time, UnknownFields, impl_resource};

/// An enrolment request; its name is the device id.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeDeviceSignedRequest {
    /// Always `management.project-flotta.io/v1alpha1`.
    pub api_version: String,
    /// Always `EdgeDeviceSignedRequest`.
    pub kind: String,
    /// Object metadata; the name is the device id.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The request.
    pub spec: EdgeDeviceSignedRequestSpec,
    /// Its state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<EdgeDeviceSignedRequestStatus>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

// Flotta registers the plural in the singular form; kept for compatibility.
impl_resource!(EdgeDeviceSignedRequest, EdgeDeviceSignedRequestSpec);

/// What a device asks for when it enrols.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeDeviceSignedRequestSpec {
    /// Whether the device may register (Flotta's default: false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved: Option<bool>,
    /// What the device reported about itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<EnrolmentFeatures>,
    /// Namespace the device lands in.
    pub target_namespace: String,
    /// Device set the device joins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_set: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// Features a device reports at enrolment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrolmentFeatures {
    /// Hardware inventory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware: Option<Hardware>,
    /// Model name from the OS (device tree model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// State of an enrolment request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EdgeDeviceSignedRequestStatus {
    /// Conditions, of type `pending`, `approved` or `declined`.
    pub conditions: Vec<EnrolmentCondition>,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

/// A condition of an enrolment request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrolmentCondition {
    /// When the condition last changed status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Human-readable detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// `pending`, `approved` or `declined` (see [`EnrolmentCondition::TYPES`]).
    #[serde(rename = "type")]
    pub type_: String,
    /// Fields this model does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: UnknownFields,
}

impl EnrolmentCondition {
    /// Accepted values of `type`.
    pub const TYPES: &'static [&'static str] = &["declined", "approved", "pending"];
}
