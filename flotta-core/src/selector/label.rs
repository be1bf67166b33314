//! Kubernetes label selectors: parsing, canonical printing and matching.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use super::lexer::{Dialect, Lexer, Token, TokenKind, empty_at, parse_single_value, unexpected};
use super::validation::{validate_label_key, validate_label_value};
use super::{SelectorError, SelectorErrorKind};
use crate::model::{LabelSelector, ObjectMeta, Resource};

/// Anything that carries labels a [`Selector`] can look at.
pub trait Labels {
    /// The value of label `key`, if the object has it.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: std::hash::BuildHasher> Labels for HashMap<String, String, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Labels for ObjectMeta {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.as_ref()?.get(key).map(String::as_str)
    }
}

impl<T: Resource> Labels for T {
    fn label(&self, key: &str) -> Option<&str> {
        self.metadata().label(key)
    }
}

/// What a [`Requirement`] asks of one label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LabelTest {
    /// `key` — the label is present, any value.
    Exists,
    /// `!key` — the label is absent.
    DoesNotExist,
    /// `key=value` (also written `key==value`).
    Equals(String),
    /// `key!=value` — also true when the label is absent.
    NotEquals(String),
    /// `key in (a,b)` — at least one value; the label is present with one of them.
    /// The text `key in ()` holds one value, the empty one.
    In(BTreeSet<String>),
    /// `key notin (a,b)` — at least one value; also true when the label is absent.
    /// The text `key notin ()` holds one value, the empty one.
    NotIn(BTreeSet<String>),
    /// `key>n` — the label's value is an integer greater than `n`.
    GreaterThan(i64),
    /// `key<n` — the label's value is an integer less than `n`.
    LessThan(i64),
}

impl LabelTest {
    /// Whether a label with this value (or `None` when absent) passes the test.
    pub fn matches(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (Self::Exists, value) => value.is_some(),
            (Self::DoesNotExist, value) => value.is_none(),
            (Self::Equals(expected), Some(value)) => expected == value,
            (Self::NotEquals(expected), Some(value)) => expected != value,
            (Self::In(values), Some(value)) => values.contains(value),
            (Self::NotIn(values), Some(value)) => !values.contains(value),
            (Self::GreaterThan(bound), Some(value)) => {
                value.parse::<i64>().is_ok_and(|v| v > *bound)
            }
            (Self::LessThan(bound), Some(value)) => value.parse::<i64>().is_ok_and(|v| v < *bound),
            (Self::NotEquals(_) | Self::NotIn(_), None) => true,
            (Self::Equals(_) | Self::In(_) | Self::GreaterThan(_) | Self::LessThan(_), None) => {
                false
            }
        }
    }

    /// Whether the test can only pass when the label is present.
    pub fn requires_key(&self) -> bool {
        !matches!(
            self,
            Self::DoesNotExist | Self::NotEquals(_) | Self::NotIn(_)
        )
    }
}

/// One comma-separated clause of a label selector: a valid key and a test on it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Requirement {
    key: String,
    test: LabelTest,
    written: Written,
}

/// The parts of a requirement Kubernetes prints as they were written rather than
/// from the test alone. Set only when it changes the printed text, so two
/// requirements that print alike compare equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Written {
    /// The test alone decides the text.
    #[default]
    AsTest,
    /// `key==value`: Kubernetes keeps the double equals sign.
    DoubleEquals,
    /// The bound of `>` / `<` with its leading zeros (`key>007`).
    Bound(String),
    /// `in` / `notin` values of a structured selector that repeat a value: Kubernetes
    /// prints every entry, sorted, duplicates included.
    Values(Vec<String>),
}

impl Requirement {
    /// Builds a requirement, checking the key, every value, and that `in` / `notin`
    /// have at least one value.
    pub fn new(key: impl Into<String>, test: LabelTest) -> Result<Self, SelectorErrorKind> {
        let key = key.into();
        validate_label_key(&key)?;
        match &test {
            LabelTest::Equals(value) | LabelTest::NotEquals(value) => validate_label_value(value)?,
            LabelTest::In(values) | LabelTest::NotIn(values) => {
                if values.is_empty() {
                    return Err(SelectorErrorKind::EmptyValueSet {
                        operator: if matches!(test, LabelTest::In(_)) {
                            "in"
                        } else {
                            "notin"
                        },
                    });
                }
                values.iter().try_for_each(|v| validate_label_value(v))?;
            }
            // The bound is written as a label value, so it cannot be negative.
            LabelTest::GreaterThan(bound) | LabelTest::LessThan(bound) => {
                validate_label_value(&bound.to_string())?;
            }
            LabelTest::Exists | LabelTest::DoesNotExist => {}
        }
        Ok(Self {
            key,
            test,
            written: Written::AsTest,
        })
    }

    /// A requirement from a key and values the caller has already validated.
    fn checked(key: &str, test: LabelTest) -> Self {
        Self {
            key: key.to_owned(),
            test,
            written: Written::AsTest,
        }
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The test on the label.
    pub fn test(&self) -> &LabelTest {
        &self.test
    }

    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &(impl Labels + ?Sized)) -> bool {
        self.test.matches(labels.label(&self.key))
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        let values = |set: &BTreeSet<String>| match &self.written {
            Written::Values(list) => list.join(","),
            // Sorted bytewise; the set holding only the empty value prints as `()`,
            // which reads back as that set.
            _ => set.iter().map(String::as_str).collect::<Vec<_>>().join(","),
        };
        let bound = |bound: &i64| match &self.written {
            Written::Bound(text) => text.clone(),
            _ => bound.to_string(),
        };
        match &self.test {
            LabelTest::Exists => write!(f, "{key}"),
            LabelTest::DoesNotExist => write!(f, "!{key}"),
            LabelTest::Equals(value) if self.written == Written::DoubleEquals => {
                write!(f, "{key}=={value}")
            }
            LabelTest::Equals(value) => write!(f, "{key}={value}"),
            LabelTest::NotEquals(value) => write!(f, "{key}!={value}"),
            LabelTest::In(set) => write!(f, "{key} in ({})", values(set)),
            LabelTest::NotIn(set) => write!(f, "{key} notin ({})", values(set)),
            LabelTest::GreaterThan(n) => write!(f, "{key}>{}", bound(n)),
            LabelTest::LessThan(n) => write!(f, "{key}<{}", bound(n)),
        }
    }
}

/// A Kubernetes label selector: requirements joined by AND.
///
/// Parse it from text with [`str::parse`], build it from the structured
/// [`LabelSelector`] with `TryFrom`, and print its canonical form with `Display`,
/// which is what Kubernetes' `String()` prints: requirements sorted by key (equal
/// keys in the order written, duplicates kept), `in` / `notin` values sorted and
/// de-duplicated, operators and `>` / `<` bounds as written (`==`, `007`).
///
/// ```
/// use std::collections::BTreeMap;
/// use flotta_core::selector::Selector;
///
/// let selector: Selector = "tier in (edge, core), !deprecated, region != eu".parse()?;
/// assert_eq!(selector.to_string(), "!deprecated,region!=eu,tier in (core,edge)");
///
/// let labels = BTreeMap::from([("tier".to_owned(), "edge".to_owned())]);
/// assert!(selector.matches(&labels));
///
/// // as Kubernetes prints it: `==` and leading zeros kept, `()` is the empty value
/// let written: Selector = "gen>007, app==web, zone in ()".parse()?;
/// assert_eq!(written.to_string(), "app==web,gen>007,zone in ()");
/// # Ok::<(), flotta_core::selector::SelectorError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    /// Sorted by key, stably, so selectors that print alike compare equal.
    requirements: Vec<Requirement>,
    /// The selector of a missing (null) structured selector: matches no object.
    nothing: bool,
}

impl Default for Selector {
    fn default() -> Self {
        Self::everything()
    }
}

impl Selector {
    /// The selector that matches every object (the empty selector).
    pub fn everything() -> Self {
        Self {
            requirements: Vec::new(),
            nothing: false,
        }
    }

    /// The selector that matches no object, which is what a missing (null) structured
    /// selector means. It has no text form: it prints as `<nothing>`, which does not
    /// parse.
    pub fn nothing() -> Self {
        Self {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Builds a selector from requirements, sorted here by key as Kubernetes does:
    /// requirements with equal keys keep their order, and duplicates are kept.
    pub fn from_requirements(requirements: impl IntoIterator<Item = Requirement>) -> Self {
        let mut requirements: Vec<_> = requirements.into_iter().collect();
        // `sort_by` is stable; Kubernetes' sort is too for up to 12 requirements
        // (see docs/selectors.md for longer selectors).
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Self {
            requirements,
            nothing: false,
        }
    }

    /// Converts an optional structured selector: `None` selects nothing, an empty
    /// one selects everything.
    pub fn from_optional(selector: Option<&LabelSelector>) -> Result<Self, SelectorError> {
        selector.map_or_else(|| Ok(Self::nothing()), Self::try_from)
    }

    /// Whether this selector matches every object.
    pub fn is_everything(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// Whether this selector matches no object (the null selector).
    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    /// The requirements, in canonical order.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &(impl Labels + ?Sized)) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nothing {
            return f.write_str("<nothing>");
        }
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut lexer = Lexer::new(text, Dialect::Label);
        let mut requirements = Vec::new();
        if lexer.peek().kind == TokenKind::End {
            return Ok(Self::everything());
        }
        loop {
            requirements.push(parse_requirement(&mut lexer)?);
            let token = lexer.next_token();
            match token.kind {
                TokenKind::End => break,
                TokenKind::Comma => {
                    let next = lexer.peek();
                    if !(next.kind.is_word() || next.kind == TokenKind::Not) {
                        return Err(unexpected(next, "a key or '!' after ','"));
                    }
                }
                _ => return Err(unexpected(token, "',' or the end of the selector")),
            }
        }
        Ok(Self::from_requirements(requirements))
    }
}

fn parse_requirement(lexer: &mut Lexer<'_>) -> Result<Requirement, SelectorError> {
    let mut token = lexer.next_token();
    let negated = token.kind == TokenKind::Not;
    if negated {
        token = lexer.next_token();
    }
    // `in` and `notin` are operators only after a key; as a key they are words.
    if !token.kind.is_word() {
        return Err(unexpected(token, "a label key"));
    }
    let key = token.text;
    let key_offset = token.offset;
    validate_label_key(key).map_err(|kind| SelectorError::at(key_offset, kind))?;
    if negated {
        return Ok(Requirement::checked(key, LabelTest::DoesNotExist));
    }
    if matches!(lexer.peek().kind, TokenKind::Comma | TokenKind::End) {
        return Ok(Requirement::checked(key, LabelTest::Exists));
    }
    let operator = lexer.next_token();
    let mut written = Written::AsTest;
    let test = match operator.kind {
        TokenKind::In | TokenKind::NotIn => {
            let mut set = BTreeSet::new();
            for value in parse_values(lexer)? {
                validate_label_value(value.text).map_err(|k| SelectorError::at(value.offset, k))?;
                set.insert(value.text.to_owned());
            }
            if operator.kind == TokenKind::In {
                LabelTest::In(set)
            } else {
                LabelTest::NotIn(set)
            }
        }
        TokenKind::Equals | TokenKind::DoubleEquals | TokenKind::NotEquals => {
            let value = parse_single_value(lexer)?;
            validate_label_value(value.text).map_err(|k| SelectorError::at(value.offset, k))?;
            match operator.kind {
                TokenKind::NotEquals => LabelTest::NotEquals(value.text.to_owned()),
                TokenKind::DoubleEquals => {
                    written = Written::DoubleEquals;
                    LabelTest::Equals(value.text.to_owned())
                }
                _ => LabelTest::Equals(value.text.to_owned()),
            }
        }
        TokenKind::Greater | TokenKind::Less => {
            let value = parse_single_value(lexer)?;
            let at = |kind| SelectorError::at(value.offset, kind);
            validate_label_value(value.text).map_err(at)?;
            let bound = value.text.parse::<i64>().map_err(|_| {
                at(SelectorErrorKind::NotAnInteger {
                    value: value.text.to_owned(),
                    operator: if operator.kind == TokenKind::Greater {
                        ">"
                    } else {
                        "<"
                    },
                })
            })?;
            // A valid label value holds no sign, so only leading zeros make the
            // text differ from the number.
            if bound.to_string() != value.text {
                written = Written::Bound(value.text.to_owned());
            }
            if operator.kind == TokenKind::Greater {
                LabelTest::GreaterThan(bound)
            } else {
                LabelTest::LessThan(bound)
            }
        }
        _ => {
            return Err(unexpected(
                operator,
                "an operator: '=', '==', '!=', 'in', 'notin', '>' or '<'",
            ));
        }
    };
    Ok(Requirement {
        key: key.to_owned(),
        test,
        written,
    })
}

/// Reads the values of `in` / `notin`, `( ... )`, with Kubernetes' rules for empty
/// entries: `()` is the empty value alone; an empty entry at the start, at the end
/// or between two commas is the empty value. Kubernetes reads commas in pairs after
/// a value, so an odd run of empty entries before `)` (`(a,,)`, `(,,)`) is refused
/// while `(a,)`, `(,)` and `(a,,,)` are read; this follows it.
fn parse_values<'a>(lexer: &mut Lexer<'a>) -> Result<Vec<Token<'a>>, SelectorError> {
    let open = lexer.next_token();
    if open.kind != TokenKind::OpenParen {
        return Err(unexpected(open, "'('"));
    }
    let first = lexer.peek();
    if first.kind == TokenKind::CloseParen {
        lexer.next_token();
        return Ok(vec![empty_at(first.offset)]);
    }
    if !(first.kind.is_word() || first.kind == TokenKind::Comma) {
        return Err(unexpected(first, "a value, ',' or ')'"));
    }
    let mut values = Vec::new();
    loop {
        let token = lexer.next_token();
        if token.kind.is_word() {
            values.push(token);
            let next = lexer.peek();
            match next.kind {
                TokenKind::Comma => {}
                TokenKind::CloseParen => {
                    lexer.next_token();
                    return Ok(values);
                }
                _ => return Err(unexpected(next, "',' or ')'")),
            }
        } else if token.kind == TokenKind::Comma {
            if values.is_empty() {
                values.push(empty_at(token.offset));
            }
            let next = lexer.peek();
            match next.kind {
                TokenKind::CloseParen => {
                    values.push(empty_at(next.offset));
                    lexer.next_token();
                    return Ok(values);
                }
                TokenKind::Comma => {
                    values.push(empty_at(next.offset));
                    lexer.next_token();
                }
                _ => {}
            }
        } else {
            return Err(unexpected(token, "a value or ','"));
        }
    }
}

impl TryFrom<&LabelSelector> for Selector {
    type Error = SelectorError;

    /// Converts `matchLabels` and `matchExpressions` (operators `In`, `NotIn`,
    /// `Exists`, `DoesNotExist`). An empty structure selects everything. As in
    /// Kubernetes, `matchLabels` come before expressions on the same key, and an
    /// expression's repeated values are printed repeated.
    fn try_from(selector: &LabelSelector) -> Result<Self, Self::Error> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            let field = || format!("matchLabels.{key}");
            validate_label_key(key).map_err(|k| SelectorError::in_field(field(), k))?;
            validate_label_value(value).map_err(|k| SelectorError::in_field(field(), k))?;
            requirements.push(Requirement::checked(key, LabelTest::Equals(value.clone())));
        }
        for (i, expression) in selector.match_expressions.iter().flatten().enumerate() {
            let field = |part: &str| format!("matchExpressions[{i}]{part}");
            validate_label_key(&expression.key)
                .map_err(|k| SelectorError::in_field(field(".key"), k))?;
            let values = expression.values.as_deref().unwrap_or_default();
            let mut written = Written::AsTest;
            let test = match expression.operator.as_str() {
                "In" | "NotIn" => {
                    for (j, value) in values.iter().enumerate() {
                        validate_label_value(value).map_err(|k| {
                            SelectorError::in_field(field(&format!(".values[{j}]")), k)
                        })?;
                    }
                    let set: BTreeSet<String> = values.iter().cloned().collect();
                    if set.is_empty() {
                        let operator = if expression.operator == "In" {
                            "in"
                        } else {
                            "notin"
                        };
                        return Err(SelectorError::in_field(
                            field(".values"),
                            SelectorErrorKind::EmptyValueSet { operator },
                        ));
                    }
                    if set.len() != values.len() {
                        let mut list = values.to_vec();
                        list.sort();
                        written = Written::Values(list);
                    }
                    if expression.operator == "In" {
                        LabelTest::In(set)
                    } else {
                        LabelTest::NotIn(set)
                    }
                }
                "Exists" | "DoesNotExist" => {
                    if !values.is_empty() {
                        return Err(SelectorError::in_field(
                            field(".values"),
                            SelectorErrorKind::UnexpectedValues {
                                operator: expression.operator.clone(),
                            },
                        ));
                    }
                    if expression.operator == "Exists" {
                        LabelTest::Exists
                    } else {
                        LabelTest::DoesNotExist
                    }
                }
                other => {
                    return Err(SelectorError::in_field(
                        field(".operator"),
                        SelectorErrorKind::UnknownOperator {
                            operator: other.to_owned(),
                        },
                    ));
                }
            };
            requirements.push(Requirement {
                key: expression.key.clone(),
                test,
                written,
            });
        }
        Ok(Self::from_requirements(requirements))
    }
}

impl TryFrom<LabelSelector> for Selector {
    type Error = SelectorError;

    fn try_from(selector: LabelSelector) -> Result<Self, Self::Error> {
        Self::try_from(&selector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(values: &[&str]) -> BTreeSet<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    #[test]
    fn requirement_new_checks_key_values_and_bounds() {
        assert!(Requirement::new("a", LabelTest::In(set(&["x"]))).is_ok());
        assert!(matches!(
            Requirement::new("a", LabelTest::In(BTreeSet::new())),
            Err(SelectorErrorKind::EmptyValueSet { operator: "in" })
        ));
        assert!(matches!(
            Requirement::new("a", LabelTest::NotIn(set(&["ok", "-bad"]))),
            Err(SelectorErrorKind::InvalidValue { .. })
        ));
        assert!(matches!(
            Requirement::new("bad key", LabelTest::Exists),
            Err(SelectorErrorKind::InvalidKey { .. })
        ));
        // a negative bound has no text form that Kubernetes accepts
        assert!(Requirement::new("a", LabelTest::GreaterThan(-1)).is_err());
        assert!(Requirement::new("a", LabelTest::LessThan(0)).is_ok());
    }

    #[test]
    fn from_requirements_sorts_by_key_stably_and_keeps_duplicates() {
        let b = Requirement::new("b", LabelTest::Exists).expect("valid");
        let a_not = Requirement::new("a", LabelTest::DoesNotExist).expect("valid");
        let a_one = Requirement::new("a", LabelTest::Equals("1".into())).expect("valid");
        let selector =
            Selector::from_requirements([b.clone(), a_one.clone(), a_not.clone(), b.clone()]);
        assert_eq!(selector.requirements(), [a_one, a_not, b.clone(), b]);
        assert_eq!(selector.to_string(), "a=1,!a,b,b");
    }

    fn values(text: &str) -> Result<Vec<String>, SelectorError> {
        let mut lexer = Lexer::new(text, Dialect::Label);
        parse_values(&mut lexer).map(|v| v.iter().map(|t| t.text.to_owned()).collect())
    }

    #[test]
    fn value_lists_read_empty_entries_as_kubernetes_does() {
        let ok = |text: &str, expected: &[&str]| {
            let got = values(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(got, expected, "{text}");
        };
        ok("()", &[""]);
        ok("( )", &[""]);
        ok("(a)", &["a"]);
        ok("(a,b)", &["a", "b"]);
        ok("(a,)", &["a", ""]);
        ok("(,a)", &["", "a"]);
        ok("(,)", &["", ""]);
        ok("(a,,b)", &["a", "", "b"]);
        ok("(,,a)", &["", "", "a"]);
        ok("(a,,,)", &["a", "", ""]);
        ok("(,,,)", &["", "", ""]);
        ok("(a,,,b)", &["a", "", "b"]);
        ok("(in,notin)", &["in", "notin"]);
        let refused = |text: &str, offset: usize| {
            let error = values(text).expect_err(text);
            assert_eq!(error.offset, offset, "{text}: {error}");
        };
        // after a value Kubernetes takes commas two at a time, so one left before
        // `)` has no value after it
        refused("(a,,)", 4);
        refused("(,,)", 3);
        refused("(a,b,,)", 6);
        refused("(a b)", 3);
        refused("(a", 2);
        refused("(,", 2);
        refused("(=)", 1);
        refused("a)", 0);
    }

    #[test]
    fn errors_point_at_the_offending_byte() {
        let error = "tier=edge, zone in (a, b c)"
            .parse::<Selector>()
            .expect_err("missing comma");
        assert_eq!(error.offset, 25);
        assert_eq!(
            error.kind,
            SelectorErrorKind::UnexpectedToken {
                found: "c".to_owned(),
                expected: "',' or ')'"
            }
        );
        assert_eq!(
            error.to_string(),
            "invalid selector at byte 25: found 'c', expected ',' or ')'"
        );
    }
}
