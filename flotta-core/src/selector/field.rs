//! Field selectors: typed tests on a whitelist of fields per resource, with
//! Kubernetes' `=`, `==`, `!=`, `in`, `notin`, exists and `!`, plus Flight Control's
//! `contains`, `notcontains`, `>`, `>=`, `<`, `<=`.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::lexer::{Dialect, Lexer, TokenKind, parse_single_value, parse_value_list, unexpected};
use super::{SelectorError, SelectorErrorKind};
use crate::model::ObjectMeta;

/// The type of a selectable field, which decides the operators it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FieldKind {
    /// Text: `=`, `!=`, `in`, `notin`, `contains`, `notcontains`, exists.
    String,
    /// 64-bit integer: `=`, `!=`, `in`, `notin`, `>`, `>=`, `<`, `<=`, exists.
    Number,
    /// RFC 3339 instant: as `Number`, compared as instants.
    Timestamp,
    /// `true` / `false`: `=`, `!=`, `in`, `notin`, exists.
    Boolean,
}

impl FieldKind {
    /// Human name used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Number => "integer",
            Self::Timestamp => "RFC 3339 timestamp",
            Self::Boolean => "boolean",
        }
    }

    fn allows(self, operator: TokenKind) -> bool {
        use TokenKind as T;
        match operator {
            T::Equals | T::DoubleEquals | T::NotEquals | T::In | T::NotIn => true,
            T::Contains | T::NotContains => self == Self::String,
            T::Greater | T::GreaterOrEqual | T::Less | T::LessOrEqual => {
                matches!(self, Self::Number | Self::Timestamp)
            }
            _ => false,
        }
    }

    fn parse_operand(
        self,
        path: &'static str,
        text: &str,
        offset: usize,
    ) -> Result<FieldOperand, SelectorError> {
        let invalid = || {
            SelectorError::at(
                offset,
                SelectorErrorKind::InvalidFieldValue {
                    field: path,
                    value: text.to_owned(),
                    kind: self.name(),
                },
            )
        };
        match self {
            Self::String => Ok(FieldOperand::String(text.to_owned())),
            Self::Number => text
                .parse()
                .map(FieldOperand::Number)
                .map_err(|_| invalid()),
            Self::Timestamp => OffsetDateTime::parse(text, &Rfc3339)
                .map(|at| FieldOperand::Timestamp {
                    at,
                    text: text.to_owned(),
                })
                .map_err(|_| invalid()),
            Self::Boolean => match text {
                "true" => Ok(FieldOperand::Boolean(true)),
                "false" => Ok(FieldOperand::Boolean(false)),
                _ => Err(invalid()),
            },
        }
    }
}

/// One selectable field of a resource: its dotted path and its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldSpec {
    /// Dotted path as written in selectors, e.g. `status.lastSeen`.
    pub path: &'static str,
    /// The field's type.
    pub kind: FieldKind,
}

impl FieldSpec {
    /// A field spec, usable in `const` whitelists.
    pub const fn new(path: &'static str, kind: FieldKind) -> Self {
        Self { path, kind }
    }
}

/// The current value of a field on an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue<'a> {
    /// Text.
    String(Cow<'a, str>),
    /// Integer.
    Number(i64),
    /// Instant.
    Timestamp(OffsetDateTime),
    /// Flag.
    Boolean(bool),
}

/// A resource whose fields can be selected: the whitelist and a way to read each
/// whitelisted field.
pub trait Fields {
    /// Every field a selector may name, with its type.
    const FIELDS: &'static [FieldSpec];

    /// The value of `path` (one of [`Fields::FIELDS`]), or `None` when the object
    /// does not have it set.
    fn field_value(&self, path: &str) -> Option<FieldValue<'_>>;
}

/// The `metadata.*` fields every resource offers.
pub const METADATA_FIELDS: &[FieldSpec] = &[
    FieldSpec::new("metadata.name", FieldKind::String),
    FieldSpec::new("metadata.namespace", FieldKind::String),
    FieldSpec::new("metadata.creationTimestamp", FieldKind::Timestamp),
    FieldSpec::new("metadata.generation", FieldKind::Number),
];

/// Reads one of [`METADATA_FIELDS`] from object metadata; `None` for other paths.
pub fn metadata_field_value<'a>(metadata: &'a ObjectMeta, path: &str) -> Option<FieldValue<'a>> {
    match path {
        "metadata.name" => metadata
            .name
            .as_deref()
            .map(|v| FieldValue::String(v.into())),
        "metadata.namespace" => metadata
            .namespace
            .as_deref()
            .map(|v| FieldValue::String(v.into())),
        "metadata.creationTimestamp" => metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| OffsetDateTime::from_unix_timestamp_nanos(t.0.as_nanosecond()).ok())
            .map(FieldValue::Timestamp),
        "metadata.generation" => metadata.generation.map(FieldValue::Number),
        _ => None,
    }
}

/// A typed value written in a field selector.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum FieldOperand {
    /// Text.
    String(String),
    /// Integer.
    Number(i64),
    /// Instant, with the text it was written as (printed back unchanged).
    Timestamp {
        /// The instant.
        at: OffsetDateTime,
        /// The RFC 3339 text.
        text: String,
    },
    /// Flag.
    Boolean(bool),
}

impl FieldOperand {
    /// How the object's value compares to this operand; `None` when the types differ.
    fn compare(&self, value: &FieldValue<'_>) -> Option<Ordering> {
        match (self, value) {
            (Self::String(a), FieldValue::String(b)) => Some(b.as_ref().cmp(a.as_str())),
            (Self::Number(a), FieldValue::Number(b)) => Some(b.cmp(a)),
            (Self::Timestamp { at, .. }, FieldValue::Timestamp(b)) => Some(b.cmp(at)),
            (Self::Boolean(a), FieldValue::Boolean(b)) => Some(b.cmp(a)),
            _ => None,
        }
    }

    fn equals(&self, value: &FieldValue<'_>) -> bool {
        self.compare(value) == Some(Ordering::Equal)
    }
}

impl fmt::Display for FieldOperand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::String(text) | Self::Timestamp { text, .. } => f.write_str(text),
            Self::Number(n) => write!(f, "{n}"),
            Self::Boolean(b) => write!(f, "{b}"),
        }
    }
}

/// What a [`FieldRequirement`] asks of one field. Every negative test is the exact
/// complement of its positive one, so it also holds when the field is unset.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum FieldTest {
    /// `field` — set.
    Exists,
    /// `!field` — unset.
    DoesNotExist,
    /// `field=value` (also `==`).
    Equals(FieldOperand),
    /// `field!=value`.
    NotEquals(FieldOperand),
    /// `field in (a,b)`.
    In(BTreeSet<FieldOperand>),
    /// `field notin (a,b)`.
    NotIn(BTreeSet<FieldOperand>),
    /// `field contains text` — substring, string fields only.
    Contains(String),
    /// `field notcontains text`.
    NotContains(String),
    /// `field>value`.
    GreaterThan(FieldOperand),
    /// `field>=value`.
    GreaterOrEqual(FieldOperand),
    /// `field<value`.
    LessThan(FieldOperand),
    /// `field<=value`.
    LessOrEqual(FieldOperand),
}

impl FieldTest {
    /// Whether a field with this value (`None` when unset) passes the test.
    pub fn matches(&self, value: Option<&FieldValue<'_>>) -> bool {
        let compare = |operand: &FieldOperand, accept: fn(Ordering) -> bool| {
            value.and_then(|v| operand.compare(v)).is_some_and(accept)
        };
        let contains = |needle: &str| matches!(value, Some(FieldValue::String(haystack)) if haystack.contains(needle));
        match self {
            Self::Exists => value.is_some(),
            Self::DoesNotExist => value.is_none(),
            Self::Equals(operand) => value.is_some_and(|v| operand.equals(v)),
            Self::NotEquals(operand) => !value.is_some_and(|v| operand.equals(v)),
            Self::In(set) => value.is_some_and(|v| set.iter().any(|o| o.equals(v))),
            Self::NotIn(set) => !value.is_some_and(|v| set.iter().any(|o| o.equals(v))),
            Self::Contains(needle) => contains(needle),
            Self::NotContains(needle) => !contains(needle),
            Self::GreaterThan(operand) => compare(operand, Ordering::is_gt),
            Self::GreaterOrEqual(operand) => compare(operand, Ordering::is_ge),
            Self::LessThan(operand) => compare(operand, Ordering::is_lt),
            Self::LessOrEqual(operand) => compare(operand, Ordering::is_le),
        }
    }
}

/// One clause of a field selector: a whitelisted field and a test on it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldRequirement {
    path: &'static str,
    test: FieldTest,
}

impl FieldRequirement {
    /// The field path.
    pub fn path(&self) -> &'static str {
        self.path
    }

    /// The test on the field.
    pub fn test(&self) -> &FieldTest {
        &self.test
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path;
        match &self.test {
            FieldTest::Exists => write!(f, "{path}"),
            FieldTest::DoesNotExist => write!(f, "!{path}"),
            FieldTest::Equals(v) => write!(f, "{path}={v}"),
            FieldTest::NotEquals(v) => write!(f, "{path}!={v}"),
            FieldTest::In(set) => write!(f, "{path} in ({})", super::lexer::join_set(set)),
            FieldTest::NotIn(set) => write!(f, "{path} notin ({})", super::lexer::join_set(set)),
            FieldTest::Contains(v) => write!(f, "{path} contains {v}"),
            FieldTest::NotContains(v) => write!(f, "{path} notcontains {v}"),
            FieldTest::GreaterThan(v) => write!(f, "{path}>{v}"),
            FieldTest::GreaterOrEqual(v) => write!(f, "{path}>={v}"),
            FieldTest::LessThan(v) => write!(f, "{path}<{v}"),
            FieldTest::LessOrEqual(v) => write!(f, "{path}<={v}"),
        }
    }
}

/// A field selector: requirements on whitelisted, typed fields, joined by AND.
///
/// ```
/// use flotta_core::selector::{FieldKind, FieldSelector, FieldSpec, FieldValue, Fields};
///
/// struct Probe { name: String, restarts: i64 }
/// impl Fields for Probe {
///     const FIELDS: &'static [FieldSpec] = &[
///         FieldSpec::new("metadata.name", FieldKind::String),
///         FieldSpec::new("status.restarts", FieldKind::Number),
///     ];
///     fn field_value(&self, path: &str) -> Option<FieldValue<'_>> {
///         match path {
///             "metadata.name" => Some(FieldValue::String(self.name.as_str().into())),
///             "status.restarts" => Some(FieldValue::Number(self.restarts)),
///             _ => None,
///         }
///     }
/// }
///
/// let selector = FieldSelector::parse_for::<Probe>("metadata.name contains cam, status.restarts>=3")?;
/// assert!(selector.matches(&Probe { name: "cam-01".into(), restarts: 4 }));
/// assert!(FieldSelector::parse_for::<Probe>("status.phase=Up").is_err());
/// # Ok::<(), flotta_core::selector::SelectorError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    /// Sorted and de-duplicated.
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses `text` against the whitelist of `T`.
    pub fn parse_for<T: Fields + ?Sized>(text: &str) -> Result<Self, SelectorError> {
        Self::parse(text, T::FIELDS)
    }

    /// Parses `text` against a whitelist of fields.
    pub fn parse(text: &str, fields: &[FieldSpec]) -> Result<Self, SelectorError> {
        let mut lexer = Lexer::new(text, Dialect::Field);
        let mut requirements = Vec::new();
        if lexer.peek().kind != TokenKind::End {
            loop {
                requirements.push(parse_requirement(&mut lexer, fields)?);
                let token = lexer.next_token();
                match token.kind {
                    TokenKind::End => break,
                    TokenKind::Comma => {
                        let next = lexer.peek();
                        if !matches!(next.kind, TokenKind::Identifier | TokenKind::Not) {
                            return Err(unexpected(next, "a field or '!' after ','"));
                        }
                    }
                    _ => return Err(unexpected(token, "',' or the end of the selector")),
                }
            }
        }
        requirements.sort();
        requirements.dedup();
        Ok(Self { requirements })
    }

    /// Whether this selector matches every object.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, in canonical order.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Whether `object` satisfies every requirement.
    pub fn matches<T: Fields + ?Sized>(&self, object: &T) -> bool {
        self.requirements
            .iter()
            .all(|r| r.test.matches(object.field_value(r.path).as_ref()))
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

fn parse_requirement(
    lexer: &mut Lexer<'_>,
    fields: &[FieldSpec],
) -> Result<FieldRequirement, SelectorError> {
    let mut token = lexer.next_token();
    let negated = token.kind == TokenKind::Not;
    if negated {
        token = lexer.next_token();
    }
    if token.kind != TokenKind::Identifier {
        return Err(unexpected(token, "a field name"));
    }
    let Some(spec) = fields.iter().find(|spec| spec.path == token.text) else {
        return Err(SelectorError::at(
            token.offset,
            SelectorErrorKind::UnknownField {
                field: token.text.to_owned(),
                valid: fields.iter().map(|spec| spec.path).collect(),
            },
        ));
    };
    let path = spec.path;
    if negated {
        return Ok(FieldRequirement {
            path,
            test: FieldTest::DoesNotExist,
        });
    }
    if matches!(lexer.peek().kind, TokenKind::Comma | TokenKind::End) {
        return Ok(FieldRequirement {
            path,
            test: FieldTest::Exists,
        });
    }
    let operator = lexer.next_token();
    let is_operator = matches!(
        operator.kind,
        TokenKind::Equals
            | TokenKind::DoubleEquals
            | TokenKind::NotEquals
            | TokenKind::In
            | TokenKind::NotIn
            | TokenKind::Contains
            | TokenKind::NotContains
            | TokenKind::Greater
            | TokenKind::GreaterOrEqual
            | TokenKind::Less
            | TokenKind::LessOrEqual
    );
    if !is_operator {
        return Err(unexpected(
            operator,
            "an operator: '=', '==', '!=', 'in', 'notin', 'contains', 'notcontains', '>', '>=', '<' or '<='",
        ));
    }
    let operator_name = operator_name(operator.kind);
    if !spec.kind.allows(operator.kind) {
        return Err(SelectorError::at(
            operator.offset,
            SelectorErrorKind::OperatorNotForField {
                field: path,
                operator: operator_name,
                kind: spec.kind.name(),
            },
        ));
    }
    let test = match operator.kind {
        TokenKind::In | TokenKind::NotIn => {
            let mut set = BTreeSet::new();
            for value in parse_value_list(lexer)? {
                set.insert(spec.kind.parse_operand(path, value.text, value.offset)?);
            }
            if set.is_empty() {
                return Err(SelectorError::at(
                    operator.offset,
                    SelectorErrorKind::EmptyValueSet {
                        operator: operator_name,
                    },
                ));
            }
            if operator.kind == TokenKind::In {
                FieldTest::In(set)
            } else {
                FieldTest::NotIn(set)
            }
        }
        TokenKind::Contains | TokenKind::NotContains => {
            let value = lexer.expect_word("a value")?;
            if operator.kind == TokenKind::Contains {
                FieldTest::Contains(value.text.to_owned())
            } else {
                FieldTest::NotContains(value.text.to_owned())
            }
        }
        kind => {
            let value = parse_single_value(lexer)?;
            let operand = spec.kind.parse_operand(path, value.text, value.offset)?;
            match kind {
                TokenKind::NotEquals => FieldTest::NotEquals(operand),
                TokenKind::Greater => FieldTest::GreaterThan(operand),
                TokenKind::GreaterOrEqual => FieldTest::GreaterOrEqual(operand),
                TokenKind::Less => FieldTest::LessThan(operand),
                TokenKind::LessOrEqual => FieldTest::LessOrEqual(operand),
                _ => FieldTest::Equals(operand),
            }
        }
    };
    Ok(FieldRequirement { path, test })
}

fn operator_name(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::Equals => "=",
        TokenKind::DoubleEquals => "==",
        TokenKind::NotEquals => "!=",
        TokenKind::In => "in",
        TokenKind::NotIn => "notin",
        TokenKind::Contains => "contains",
        TokenKind::NotContains => "notcontains",
        TokenKind::Greater => ">",
        TokenKind::GreaterOrEqual => ">=",
        TokenKind::Less => "<",
        _ => "<=",
    }
}
