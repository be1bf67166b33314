//! Label and field selectors, and the inverted index that matches them across a
//! fleet.
//!
//! - [`Selector`]: Kubernetes label selectors, exact grammar and semantics
//!   (`=`, `==`, `!=`, `in`, `notin`, `key`, `!key`, `>`, `<`), from text or from the
//!   structured [`LabelSelector`](crate::model::LabelSelector).
//! - [`FieldSelector`]: field selectors over a per-resource whitelist of typed
//!   fields ([`Fields`]), with Flight Control's `contains`, `notcontains`, `>`, `>=`,
//!   `<`, `<=` on numbers and RFC 3339 timestamps.
//! - [`DeviceIndex`]: label key/value → devices, updated incrementally, answering
//!   selector queries and reporting which registered selectors start or stop
//!   matching a device when its labels change.

mod error;
mod field;
mod index;
mod label;
mod lexer;
mod resources;
mod validation;

pub use error::{SelectorError, SelectorErrorKind};
pub use field::{
    FieldKind, FieldOperand, FieldRequirement, FieldSelector, FieldSpec, FieldTest, FieldValue,
    Fields, METADATA_FIELDS, metadata_field_value,
};
pub use index::{DeviceIndex, SelectorChanges};
pub use label::{LabelTest, Labels, Requirement, Selector};
pub use validation::{
    MAX_LABEL_NAME_LEN, MAX_LABEL_PREFIX_LEN, validate_label_key, validate_label_value,
};
