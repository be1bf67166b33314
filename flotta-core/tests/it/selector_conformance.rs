//! Table-driven conformance suite for label selectors: every operator, the
//! validation limits, canonical printing, and match / no-match with missing keys.

use std::collections::{BTreeMap, HashMap};

use flotta_core::model::{LabelSelector, LabelSelectorRequirement, ObjectMeta};
use flotta_core::selector::{Labels, Selector, SelectorErrorKind};

fn labels(text: &str) -> BTreeMap<String, String> {
    text.split_whitespace()
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// (selector, labels as `k=v k=v`, expected match)
const MATCHES: &[(&str, &str, bool)] = &[
    // empty selector and whitespace-only select everything
    ("", "", true),
    ("", "a=1", true),
    (" \t\n ", "a=1", true),
    // equality
    ("a=1", "a=1", true),
    ("a=1", "a=2", false),
    ("a=1", "", false),
    ("a==1", "a=1", true),
    ("a==1", "b=1", false),
    ("a=", "a=", true),
    ("a=", "a=x", false),
    ("a=", "", false),
    // inequality matches objects without the key
    ("a!=1", "a=2", true),
    ("a!=1", "a=1", false),
    ("a!=1", "", true),
    ("a!=1", "b=1", true),
    // set membership
    ("a in (1,2)", "a=2", true),
    ("a in (1,2)", "a=3", false),
    ("a in (1,2)", "", false),
    ("a in (1,)", "a=", true),
    ("a notin (1,2)", "a=3", true),
    ("a notin (1,2)", "a=1", false),
    ("a notin (1,2)", "", true),
    // existence
    ("a", "a=", true),
    ("a", "a=x", true),
    ("a", "b=x", false),
    ("!a", "b=x", true),
    ("!a", "a=", false),
    ("!a", "", true),
    // integer comparison
    ("a>5", "a=6", true),
    ("a>5", "a=5", false),
    ("a>5", "a=x", false),
    ("a>5", "", false),
    ("a<5", "a=4", true),
    ("a<5", "a=-9", true),
    ("a<5", "a=5", false),
    ("a<5", "a=4.5", false),
    ("a<007", "a=6", true),
    // AND
    ("a=1,b=2", "a=1 b=2", true),
    ("a=1,b=2", "a=1 b=3", false),
    ("a=1,b=2", "a=1", false),
    ("a=1,!b", "a=1", true),
    ("a=1,a=2", "a=1", false),
    ("a in (1,2),a notin (2)", "a=1", true),
    ("a in (1,2),a notin (2)", "a=2", false),
    // whitespace as Kubernetes tolerates it
    ("  a = 1 ,  b  in ( x , y )  ", "a=1 b=y", true),
    ("a\t!=\t1", "a=2", true),
    ("! a", "", true),
    // keywords are plain values inside value positions
    ("a in (in,notin)", "a=notin", true),
    ("a=in", "a=in", true),
    // prefixed keys
    ("example.com/tier=edge", "example.com/tier=edge", true),
    ("example.com/tier=edge", "tier=edge", false),
    ("!example.com/tier", "tier=edge", true),
];

#[test]
fn matching_table() {
    for (selector, object, expected) in MATCHES {
        let parsed: Selector = selector
            .parse()
            .unwrap_or_else(|e| panic!("{selector:?} must parse: {e}"));
        let labels = labels(object);
        assert_eq!(
            parsed.matches(&labels),
            *expected,
            "{selector:?} against {object:?}"
        );
        let hashed: HashMap<String, String> = labels.clone().into_iter().collect();
        assert_eq!(parsed.matches(&hashed), *expected, "HashMap: {selector:?}");
        let meta = ObjectMeta {
            labels: Some(labels),
            ..ObjectMeta::default()
        };
        assert_eq!(parsed.matches(&meta), *expected, "ObjectMeta: {selector:?}");
    }
}

/// Recognises the expected kind of error.
type KindCheck = fn(&SelectorErrorKind) -> bool;

/// (selector, byte offset of the error)
const ERRORS: &[(&str, usize)] = &[
    ("x=a||y=b", 2),
    ("x==a==b", 4),
    ("!x=a", 2),
    ("x<a", 2),
    ("x>1.5", 2),
    ("x>99999999999999999999", 2),
    ("x in (a b)", 8),
    ("x in ()", 2),
    ("x notin ()", 2),
    ("x in a", 5),
    ("x in (a", 7),
    ("x in (a,b", 9),
    (",", 0),
    ("a,", 2),
    ("a,,b", 2),
    ("a=1,", 4),
    ("=a", 0),
    ("a b", 2),
    ("a=b c", 4),
    ("in=a", 0),
    ("a>=1", 2),
    ("a=(b)", 2),
    ("!", 1),
    ("!!a", 1),
    ("a!b", 1),
    ("a=b=c", 3),
    ("a(", 1),
    ("a) ", 1),
    ("a=b,(", 4),
    ("-a=b", 0),
    ("a-=b", 0),
    ("a=-b", 2),
    ("a=b-", 2),
    ("a=b c=d", 4),
    ("a in (b,-c)", 8),
    ("a=é", 2),
    ("é=a", 0),
    ("a contains b", 2),
];

#[test]
fn error_table() {
    for (selector, offset) in ERRORS {
        match selector.parse::<Selector>() {
            Ok(parsed) => panic!("{selector:?} must not parse, got {parsed}"),
            Err(error) => {
                assert_eq!(error.offset, *offset, "{selector:?}: {error}");
                assert!(
                    error.to_string().contains(&format!("at byte {offset}")),
                    "{error}"
                );
            }
        }
    }
}

#[test]
fn validation_limits() {
    let name63 = "k".repeat(63);
    let name64 = "k".repeat(64);
    let value63 = "v".repeat(63);
    let value64 = "v".repeat(64);
    let prefix253 = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    assert_eq!(prefix253.len(), 253);
    let prefix254 = format!("{prefix253}e");
    let ok = [
        format!("{name63}=x"),
        format!("x={value63}"),
        format!("x in ({value63})"),
        format!("{prefix253}/{name63}=x"),
        format!("!{prefix253}/x"),
        "a.b-c_d=E.f-G_h".to_owned(),
        "x=9".to_owned(),
    ];
    for text in &ok {
        assert!(text.parse::<Selector>().is_ok(), "{text} must parse");
    }
    let bad: [(String, KindCheck); 10] = [
        (format!("{name64}=x"), |k| {
            matches!(k, SelectorErrorKind::InvalidKey { .. })
        }),
        (format!("x={value64}"), |k| {
            matches!(k, SelectorErrorKind::InvalidValue { .. })
        }),
        (format!("x notin (a,{value64})"), |k| {
            matches!(k, SelectorErrorKind::InvalidValue { .. })
        }),
        (format!("{prefix254}/x=a"), |k| {
            matches!(k, SelectorErrorKind::InvalidKey { .. })
        }),
        (format!("{prefix253}/{name64}"), |k| {
            matches!(k, SelectorErrorKind::InvalidKey { .. })
        }),
        ("Example.com/x".to_owned(), |k| {
            matches!(k, SelectorErrorKind::InvalidKey { .. })
        }),
        ("a/b/c".to_owned(), |k| {
            matches!(k, SelectorErrorKind::InvalidKey { .. })
        }),
        ("/x".to_owned(), |k| {
            matches!(k, SelectorErrorKind::InvalidKey { .. })
        }),
        ("x/".to_owned(), |k| {
            matches!(k, SelectorErrorKind::InvalidKey { .. })
        }),
        ("x>z".to_owned(), |k| {
            matches!(k, SelectorErrorKind::NotAnInteger { .. })
        }),
    ];
    for (text, expected) in &bad {
        let error = text.parse::<Selector>().expect_err(text);
        assert!(expected(&error.kind), "{text}: {error}");
    }
}

/// (input, canonical form)
const CANONICAL: &[(&str, &str)] = &[
    ("", ""),
    ("b=1,a=2", "a=2,b=1"),
    ("a==1", "a=1"),
    ("a in (z, b, b, a)", "a in (a,b,z)"),
    ("a notin (z,a,z)", "a notin (a,z)"),
    ("  !c ,  b , a != x", "a!=x,b,!c"),
    ("a>007", "a>7"),
    ("a<00", "a<0"),
    ("a in (,)", "a in (,)"),
    ("a in (x,)", "a in (,x)"),
    ("a=", "a="),
    ("a=1,a=1", "a=1"),
    ("x.io/b=1,a=1", "a=1,x.io/b=1"),
];

#[test]
fn canonical_printing() {
    for (input, canonical) in CANONICAL {
        let parsed: Selector = input.parse().unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(parsed.to_string(), *canonical, "{input:?}");
        let reparsed: Selector = canonical
            .parse()
            .unwrap_or_else(|e| panic!("{canonical:?}: {e}"));
        assert_eq!(reparsed, parsed, "{input:?}");
    }
}

#[test]
fn everything_and_nothing() {
    let any = labels("a=1");
    assert!(Selector::everything().matches(&any));
    assert!(Selector::everything().matches(&labels("")));
    assert!(!Selector::nothing().matches(&any));
    assert!(!Selector::nothing().matches(&labels("")));
    assert_eq!("".parse::<Selector>().ok(), Some(Selector::everything()));
    // `nothing` has no text form, so its printed form must never read back as a selector
    assert!(Selector::nothing().to_string().parse::<Selector>().is_err());
}

fn expression(key: &str, operator: &str, values: Option<&[&str]>) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.to_owned(),
        operator: operator.to_owned(),
        values: values.map(|v| v.iter().map(|s| (*s).to_owned()).collect()),
    }
}

#[test]
fn structured_selectors() {
    let structured = LabelSelector {
        match_labels: Some(BTreeMap::from([("tier".to_owned(), "edge".to_owned())])),
        match_expressions: Some(vec![
            expression("zone", "In", Some(&["b", "a"])),
            expression("legacy", "DoesNotExist", None),
            expression("gpu", "Exists", Some(&[])),
            expression("arch", "NotIn", Some(&["s390x"])),
        ]),
    };
    let selector = Selector::try_from(&structured).expect("valid structured selector");
    assert_eq!(
        selector.to_string(),
        "arch notin (s390x),gpu,!legacy,tier=edge,zone in (a,b)"
    );
    assert!(selector.matches(&labels("tier=edge zone=a gpu=1")));
    assert!(!selector.matches(&labels("tier=edge zone=a gpu=1 legacy=yes")));
    assert!(!selector.matches(&labels("tier=edge zone=c gpu=1")));

    // an empty structure selects everything, a missing one selects nothing
    let empty = Selector::try_from(&LabelSelector::default()).expect("empty selector");
    assert!(empty.is_everything());
    assert!(empty.matches(&labels("x=y")));
    let missing = Selector::from_optional(None).expect("missing selector");
    assert!(missing.is_nothing());
    assert!(!missing.matches(&labels("x=y")));
    assert_eq!(
        Selector::from_optional(Some(&structured)).ok(),
        Some(selector)
    );
}

#[test]
fn structured_selector_errors() {
    let with = |e: LabelSelectorRequirement| LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![expression("ok", "Exists", None), e]),
    };
    let cases: [(LabelSelector, &str, KindCheck); 7] = [
        (
            with(expression("a", "Exists", Some(&["x"]))),
            "matchExpressions[1].values",
            |k| matches!(k, SelectorErrorKind::UnexpectedValues { .. }),
        ),
        (
            with(expression("a", "DoesNotExist", Some(&["x"]))),
            "matchExpressions[1].values",
            |k| matches!(k, SelectorErrorKind::UnexpectedValues { .. }),
        ),
        (
            with(expression("a", "In", None)),
            "matchExpressions[1].values",
            |k| matches!(k, SelectorErrorKind::EmptyValueSet { operator: "in" }),
        ),
        (
            with(expression("a", "NotIn", Some(&[]))),
            "matchExpressions[1].values",
            |k| matches!(k, SelectorErrorKind::EmptyValueSet { operator: "notin" }),
        ),
        (
            with(expression("a", "Gt", Some(&["1"]))),
            "matchExpressions[1].operator",
            |k| matches!(k, SelectorErrorKind::UnknownOperator { .. }),
        ),
        (
            with(expression("a", "In", Some(&["ok", "not ok"]))),
            "matchExpressions[1].values[1]",
            |k| matches!(k, SelectorErrorKind::InvalidValue { .. }),
        ),
        (
            LabelSelector {
                match_labels: Some(BTreeMap::from([("bad key".to_owned(), "v".to_owned())])),
                match_expressions: None,
            },
            "matchLabels.bad key",
            |k| matches!(k, SelectorErrorKind::InvalidKey { .. }),
        ),
    ];
    for (structured, field, kind) in &cases {
        let error = Selector::try_from(structured).expect_err(field);
        assert_eq!(error.field.as_deref(), Some(*field), "{error}");
        assert!(kind(&error.kind), "{error}");
        assert!(error.to_string().contains(field), "{error}");
    }
}

#[test]
fn labels_trait_on_maps_and_metadata() {
    let map = labels("a=1");
    assert_eq!(map.label("a"), Some("1"));
    assert_eq!(map.label("b"), None);
    let no_labels = ObjectMeta::default();
    assert_eq!(no_labels.label("a"), None);
    assert!("!a".parse::<Selector>().expect("valid").matches(&no_labels));
}
