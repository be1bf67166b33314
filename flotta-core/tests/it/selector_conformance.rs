//! Table-driven conformance suite for label selectors: every operator, the
//! validation limits, canonical printing, and match / no-match with missing keys.
//!
//! The expectations follow Kubernetes' label selector parser
//! (`k8s.io/apimachinery/pkg/labels`, v0.34): what it accepts, how it matches and
//! what its `String()` prints. The cases are written here from that behaviour;
//! the few deliberate differences have their own test at the end.

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
    // `in` and `notin` are keys and values wherever an operator cannot stand
    ("in in (in)", "in=in", true),
    ("in in (in)", "in=x", false),
    ("in in (in)", "", false),
    ("notin=in", "notin=in", true),
    ("notin=in", "notin=notin", false),
    ("notin notin (notin)", "notin=in", true),
    ("in notin (in)", "in=in", false),
    ("!in", "x=1", true),
    ("!in", "in=1", false),
    ("!notin", "notin=", false),
    ("in", "in=", true),
    ("notin", "in=", false),
    ("a=1,in", "a=1 in=2", true),
    ("a,notin!=x", "a=1", true),
    ("a,notin!=x", "a=1 notin=x", false),
    ("in==in", "in=in", true),
    ("in>1", "in=2", true),
    // `()` is the empty value, and so is every empty entry of a list
    ("a in ()", "a=", true),
    ("a in ()", "a=x", false),
    ("a in ()", "", false),
    ("a notin ()", "", true),
    ("a notin ()", "a=", false),
    ("a notin ()", "a=x", true),
    ("a in (,x)", "a=", true),
    ("a in (,x)", "a=x", true),
    ("a in (x,)", "a=y", false),
    ("a in (x,,y)", "a=", true),
    ("a in (x,,y)", "a=y", true),
    ("a in (,,,)", "a=", true),
    ("a notin (x,,,)", "a=", false),
    ("a notin (x,,,)", "a=y", true),
    ("a in ( )", "a=", true),
    // bounds keep their leading zeros in print but compare as numbers
    ("a>00", "a=1", true),
    ("a>00", "a=0", false),
    ("a<010", "a=9", true),
    ("a<010", "a=10", false),
    // label values are read as Go's ParseInt reads them: a sign is allowed
    ("a>4", "a=+5", true),
    ("a<0", "a=-1", true),
    ("a>4", "a=5.0", false),
    ("a>4", "a=", false),
    // repeated requirements all apply
    ("a,a", "a=1", true),
    ("a=1,a==1", "a=1", true),
    ("a=1,a==2", "a=1", false),
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
        // the canonical text selects the same objects and prints itself again
        let canonical = parsed.to_string();
        let reparsed: Selector = canonical
            .parse()
            .unwrap_or_else(|e| panic!("{canonical:?} (from {selector:?}): {e}"));
        assert_eq!(reparsed, parsed, "{selector:?} -> {canonical:?}");
        assert_eq!(reparsed.to_string(), canonical, "{selector:?}");
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
    // empty entries: after a value commas are read in pairs, so a lone one
    // before `)` is refused (Kubernetes refuses these too)
    ("x in (a,,)", 9),
    ("x in (,,)", 8),
    ("x notin (a,b,,)", 14),
    ("x in (!)", 6),
    ("x in (a)b", 8),
    ("x in (", 6),
    ("x in", 4),
    // `in` / `notin` after a key are operators, so a value list must follow
    ("in in in", 6),
    ("a notin notin", 8),
    ("a in,b", 4),
    ("!in=a", 3),
    ("!in in (a)", 4),
    ("a,in (", 5),
    ("a=in in", 5),
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

/// (input, canonical form): what Kubernetes' `String()` prints for the input.
const CANONICAL: &[(&str, &str)] = &[
    ("", ""),
    (" \t", ""),
    ("b=1,a=2", "a=2,b=1"),
    ("  !c ,  b , a != x", "a!=x,b,!c"),
    ("x.io/b=1,a=1", "a=1,x.io/b=1"),
    ("a=", "a="),
    ("a= ,b= ", "a=,b="),
    // `==` stays `==`
    ("a==1", "a==1"),
    ("a == 1, b = 2", "a==1,b=2"),
    // bounds are printed as written, leading zeros included
    ("a>007", "a>007"),
    ("a<00", "a<00"),
    ("a > 0", "a>0"),
    // values inside `in (...)` are de-duplicated and sorted bytewise
    ("a in (z, b, b, a)", "a in (a,b,z)"),
    ("a notin (z,a,z)", "a notin (a,z)"),
    ("a in (b, a, B, 1)", "a in (1,B,a,b)"),
    ("x in (a_b, ab, a.b, a-b)", "x in (a-b,a.b,a_b,ab)"),
    // empty entries are the empty value, printed as an empty entry
    ("a in ()", "a in ()"),
    ("a notin ()", "a notin ()"),
    ("a in (,)", "a in ()"),
    ("a in (,,,)", "a in ()"),
    ("a in (x,)", "a in (,x)"),
    ("a in (x,,y)", "a in (,x,y)"),
    ("a notin (,x,x,)", "a notin (,x)"),
    // requirements are sorted by key, bytewise; equal keys keep their order
    ("b=1,B=1,a=1", "B=1,a=1,b=1"),
    ("a.io/x,a,A", "A,a,a.io/x"),
    ("b,a=2,a=1,a", "a=2,a=1,a,b"),
    ("a,!a", "a,!a"),
    ("!a,a", "!a,a"),
    ("a=1,a==1", "a=1,a==1"),
    ("a==1,a=1", "a==1,a=1"),
    ("z,a in (2),a in (1)", "a in (2),a in (1),z"),
    // duplicate requirements are kept
    ("a=1,a=1", "a=1,a=1"),
    ("a,a", "a,a"),
    // `in` and `notin` as keys and values
    ("in in (notin, in)", "in in (in,notin)"),
    ("notin=in", "notin=in"),
    ("!in", "!in"),
    ("!notin,in", "in,!notin"),
    ("notin notin ()", "notin notin ()"),
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
        assert_eq!(reparsed.to_string(), *canonical, "{input:?}");
    }
}

/// Kubernetes sorts requirements with Go's `sort.Sort`, which keeps equal keys in
/// written order up to 12 requirements; this checks the longest such selector.
#[test]
fn twelve_requirements_keep_equal_keys_in_written_order() {
    let text = "z,b=3,a,b=1,y,b,!b,b!=2,x,b in (2),b==1,c";
    assert_eq!(text.split(',').count(), 12);
    let parsed: Selector = text.parse().expect("valid");
    assert_eq!(
        parsed.to_string(),
        "a,b=3,b=1,b,!b,b!=2,b in (2),b==1,c,x,y,z"
    );
}

/// Where this crate refuses on purpose what Kubernetes accepts (docs/selectors.md).
#[test]
fn deliberate_differences() {
    // Kubernetes reads a NUL byte as the end of the text, or as a break between
    // tokens, and reads these as `a=b`, `a`, `a` and `a=b`; a NUL is never part
    // of a valid selector here, so they are refused
    for text in ["a=b\0", "a \0", "a\0", "a=\0b"] {
        let error = text.parse::<Selector>().expect_err(text);
        assert!(
            matches!(
                error.kind,
                SelectorErrorKind::InvalidValue { .. }
                    | SelectorErrorKind::InvalidKey { .. }
                    | SelectorErrorKind::UnexpectedToken { .. }
            ),
            "{text:?}: {error}"
        );
    }
    // Kubernetes' null selector prints as "", like "everything"; ours prints as
    // a text that does not parse
    assert_eq!(Selector::nothing().to_string(), "<nothing>");
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
    let printed = Selector::nothing().to_string();
    let error = printed
        .parse::<Selector>()
        .expect_err("`nothing` reads back");
    assert!(
        matches!(error.kind, SelectorErrorKind::UnexpectedToken { .. }),
        "{printed:?}: {error:?}"
    );
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
fn structured_selectors_print_as_kubernetes() {
    let print = |labels: &[(&str, &str)], expressions: Vec<LabelSelectorRequirement>| {
        let structured = LabelSelector {
            match_labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            match_expressions: Some(expressions),
        };
        Selector::try_from(&structured)
            .unwrap_or_else(|e| panic!("{structured:?}: {e}"))
            .to_string()
    };
    // an expression's repeated values are printed repeated, sorted
    assert_eq!(
        print(&[], vec![expression("k", "In", Some(&["b", "a", "b"]))]),
        "k in (a,b,b)"
    );
    assert_eq!(
        print(&[], vec![expression("k", "NotIn", Some(&["b", "a"]))]),
        "k notin (a,b)"
    );
    // the empty value alone prints as `()`
    assert_eq!(
        print(&[], vec![expression("k", "In", Some(&[""]))]),
        "k in ()"
    );
    // matchLabels come before expressions on the same key; expressions on one
    // key keep their order
    assert_eq!(
        print(
            &[("a", "1")],
            vec![
                expression("z", "Exists", None),
                expression("a", "DoesNotExist", None),
                expression("z", "NotIn", Some(&["x"])),
                expression("a", "Exists", None),
            ]
        ),
        "a=1,!a,a,z,z notin (x)"
    );
    // an expression list without repeats equals the parsed text
    let structured = LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![expression("k", "In", Some(&["", "x"]))]),
    };
    assert_eq!(
        Selector::try_from(&structured).ok(),
        "k in (x,)".parse::<Selector>().ok()
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
