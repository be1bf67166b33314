//! The error type shared by label and field selector parsing.

use std::fmt;

/// Why a label selector or field selector was refused.
///
/// `offset` is the byte offset in the selector text where the problem starts. For
/// selectors converted from the structured form (`matchLabels` / `matchExpressions`)
/// there is no text: `field` then names the offending part, e.g.
/// `matchExpressions[1].values[0]`, and `offset` is 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct SelectorError {
    /// Byte offset of the problem in the selector text.
    pub offset: usize,
    /// Path of the offending part of a structured selector, if it came from one.
    pub field: Option<String>,
    /// What is wrong.
    #[source]
    pub kind: SelectorErrorKind,
}

impl SelectorError {
    pub(crate) fn at(offset: usize, kind: SelectorErrorKind) -> Self {
        Self {
            offset,
            field: None,
            kind,
        }
    }

    pub(crate) fn in_field(field: String, kind: SelectorErrorKind) -> Self {
        Self {
            offset: 0,
            field: Some(field),
            kind,
        }
    }
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "invalid selector at {field}: {}", self.kind),
            None => write!(f, "invalid selector at byte {}: {}", self.offset, self.kind),
        }
    }
}

/// The kinds of problem a [`SelectorError`] reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorErrorKind {
    /// A token appeared where the grammar expects something else.
    #[error("found '{found}', expected {expected}")]
    UnexpectedToken {
        /// The text of the token found.
        found: String,
        /// What the grammar allows at this point.
        expected: &'static str,
    },
    /// The text ended where the grammar expects more.
    #[error("unexpected end of selector, expected {expected}")]
    UnexpectedEnd {
        /// What the grammar allows at this point.
        expected: &'static str,
    },
    /// A label key breaks the Kubernetes qualified-name rules.
    #[error("invalid label key '{key}': {reason}")]
    InvalidKey {
        /// The key as written.
        key: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A label value breaks the Kubernetes label-value rules.
    #[error("invalid label value '{value}': {reason}")]
    InvalidValue {
        /// The value as written.
        value: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// `>` / `<` (or a number field) was given something that is not a 64-bit integer.
    #[error("'{value}' is not a 64-bit integer, which '{operator}' requires")]
    NotAnInteger {
        /// The value as written.
        value: String,
        /// The operator that needs an integer.
        operator: &'static str,
    },
    /// `In` / `NotIn` with no value: a structured selector, [`Requirement::new`]
    /// or a field selector's `()`. (In label selector text `()` is the empty
    /// value, as in Kubernetes.)
    ///
    /// [`Requirement::new`]: super::Requirement::new
    #[error("'{operator}' needs at least one value")]
    EmptyValueSet {
        /// The operator.
        operator: &'static str,
    },
    /// A structured selector used an operator this crate does not know.
    #[error("unknown operator '{operator}', expected In, NotIn, Exists or DoesNotExist")]
    UnknownOperator {
        /// The operator as written.
        operator: String,
    },
    /// A structured `Exists` / `DoesNotExist` expression carried values.
    #[error("'{operator}' takes no values")]
    UnexpectedValues {
        /// The operator.
        operator: String,
    },
    /// A field selector named a field that is not in the resource's whitelist.
    #[error("unknown field '{field}', valid fields are: {}", valid.join(", "))]
    UnknownField {
        /// The field as written.
        field: String,
        /// Every field the resource allows, in declaration order.
        valid: Vec<&'static str>,
    },
    /// A field selector applied an operator that does not fit the field's type.
    #[error("operator '{operator}' does not apply to {kind} field '{field}'")]
    OperatorNotForField {
        /// The field path.
        field: &'static str,
        /// The operator as written.
        operator: &'static str,
        /// The field's type, e.g. `string`.
        kind: &'static str,
    },
    /// A field selector value does not parse as the field's type.
    #[error("'{value}' is not a valid {kind} for field '{field}'")]
    InvalidFieldValue {
        /// The field path.
        field: &'static str,
        /// The value as written.
        value: String,
        /// The field's type, e.g. `RFC 3339 timestamp`.
        kind: &'static str,
    },
}
