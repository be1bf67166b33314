//! Field selectors over a resource defined here, exercising every field type and
//! operator through the generic `Fields` machinery.

use flotta_core::model::ObjectMeta;
use flotta_core::selector::{
    FieldKind, FieldSelector, FieldSpec, FieldValue, Fields, METADATA_FIELDS, SelectorErrorKind,
    metadata_field_value,
};
use time::OffsetDateTime;
use time::macros::datetime;

/// A device-like resource with one field of each type.
struct Probe {
    metadata: ObjectMeta,
    phase: Option<&'static str>,
    last_seen: Option<OffsetDateTime>,
    restarts: i64,
    approved: bool,
}

const PROBE_FIELDS: &[FieldSpec] = &[
    FieldSpec::new("metadata.name", FieldKind::String),
    FieldSpec::new("metadata.namespace", FieldKind::String),
    FieldSpec::new("metadata.creationTimestamp", FieldKind::Timestamp),
    FieldSpec::new("metadata.generation", FieldKind::Number),
    FieldSpec::new("status.phase", FieldKind::String),
    FieldSpec::new("status.lastSeen", FieldKind::Timestamp),
    FieldSpec::new("status.restarts", FieldKind::Number),
    FieldSpec::new("spec.approved", FieldKind::Boolean),
];

impl Fields for Probe {
    const FIELDS: &'static [FieldSpec] = PROBE_FIELDS;

    fn field_value(&self, path: &str) -> Option<FieldValue<'_>> {
        match path {
            "status.phase" => self.phase.map(|p| FieldValue::String(p.into())),
            "status.lastSeen" => self.last_seen.map(FieldValue::Timestamp),
            "status.restarts" => Some(FieldValue::Number(self.restarts)),
            "spec.approved" => Some(FieldValue::Boolean(self.approved)),
            other => metadata_field_value(&self.metadata, other),
        }
    }
}

fn probe() -> Probe {
    Probe {
        metadata: ObjectMeta {
            name: Some("camera-01".to_owned()),
            namespace: Some("factory".to_owned()),
            generation: Some(3),
            ..ObjectMeta::default()
        },
        phase: Some("Running"),
        last_seen: Some(datetime!(2026-03-01 12:00:00 UTC)),
        restarts: 4,
        approved: true,
    }
}

/// (selector, expected match against `probe()`)
const MATCHES: &[(&str, bool)] = &[
    ("", true),
    ("metadata.name=camera-01", true),
    ("metadata.name==camera-01", true),
    ("metadata.name=camera-02", false),
    ("metadata.name!=camera-02", true),
    ("metadata.name in (camera-01, camera-02)", true),
    ("metadata.name notin (camera-01)", false),
    ("metadata.name contains cam", true),
    ("metadata.name contains xyz", false),
    ("metadata.name notcontains xyz", true),
    ("metadata.name notcontains era", false),
    ("metadata.name", true),
    ("!metadata.name", false),
    // unset fields: positive tests fail, negative tests hold
    ("metadata.creationTimestamp", false),
    ("!metadata.creationTimestamp", true),
    ("metadata.creationTimestamp>2020-01-01T00:00:00Z", false),
    ("metadata.creationTimestamp!=2020-01-01T00:00:00Z", true),
    (
        "metadata.creationTimestamp notin (2020-01-01T00:00:00Z)",
        true,
    ),
    ("metadata.namespace=factory,status.phase=Running", true),
    ("metadata.namespace=factory,status.phase=Stopped", false),
    // numbers
    ("status.restarts>3", true),
    ("status.restarts>4", false),
    ("status.restarts>=4", true),
    ("status.restarts<4", false),
    ("status.restarts<=4", true),
    ("status.restarts<5", true),
    ("status.restarts=4", true),
    ("status.restarts in (1, 4)", true),
    ("status.restarts notin (1, 4)", false),
    ("status.restarts>-10", true),
    ("metadata.generation>=3", true),
    // timestamps compare as instants, whatever the offset written
    ("status.lastSeen>2026-03-01T11:59:59Z", true),
    ("status.lastSeen>=2026-03-01T12:00:00Z", true),
    ("status.lastSeen>2026-03-01T12:00:00Z", false),
    ("status.lastSeen<2026-03-01T12:00:00.001Z", true),
    ("status.lastSeen<=2026-03-01T11:00:00Z", false),
    ("status.lastSeen=2026-03-01T14:00:00+02:00", true),
    ("status.lastSeen!=2026-03-01T14:00:00+02:00", false),
    // booleans
    ("spec.approved=true", true),
    ("spec.approved!=true", false),
    ("spec.approved in (false)", false),
];

#[test]
fn matching_table() {
    let object = probe();
    for (text, expected) in MATCHES {
        let selector = FieldSelector::parse_for::<Probe>(text)
            .unwrap_or_else(|e| panic!("{text:?} must parse: {e}"));
        assert_eq!(selector.matches(&object), *expected, "{text:?}");
    }
}

#[test]
fn missing_optional_values() {
    let mut object = probe();
    object.phase = None;
    object.last_seen = None;
    let check = |text: &str| {
        FieldSelector::parse_for::<Probe>(text)
            .expect("valid")
            .matches(&object)
    };
    assert!(check("status.phase!=Running"));
    assert!(check("status.phase notcontains Run"));
    assert!(!check("status.phase contains Run"));
    assert!(!check("status.phase in (Running)"));
    assert!(check("!status.lastSeen"));
    assert!(!check("status.lastSeen<2100-01-01T00:00:00Z"));
}

#[test]
fn canonical_printing_round_trips() {
    let cases = [
        (
            "status.restarts>=3, metadata.name contains cam",
            "metadata.name contains cam,status.restarts>=3",
        ),
        ("status.phase in (b,a,b)", "status.phase in (a,b)"),
        ("status.restarts==007", "status.restarts=7"),
        ("!status.lastSeen", "!status.lastSeen"),
        (
            "status.lastSeen<2026-03-01T14:00:00+02:00",
            "status.lastSeen<2026-03-01T14:00:00+02:00",
        ),
        ("status.phase=", "status.phase="),
        ("status.phase in (,)", "status.phase in (,)"),
    ];
    for (input, canonical) in cases {
        let parsed = FieldSelector::parse(input, PROBE_FIELDS).expect(input);
        assert_eq!(parsed.to_string(), canonical);
        assert_eq!(
            FieldSelector::parse(canonical, PROBE_FIELDS).expect(canonical),
            parsed
        );
    }
}

#[test]
fn errors_say_what_and_where() {
    let error = FieldSelector::parse_for::<Probe>("metadata.name=a, status.colour=red")
        .expect_err("unknown field");
    assert_eq!(error.offset, 17);
    match &error.kind {
        SelectorErrorKind::UnknownField { field, valid } => {
            assert_eq!(field, "status.colour");
            assert_eq!(valid.len(), PROBE_FIELDS.len());
        }
        other => panic!("unexpected {other:?}"),
    }
    let message = error.to_string();
    for spec in PROBE_FIELDS {
        assert!(message.contains(spec.path), "{message} lists {}", spec.path);
    }

    let wrong_operator: &[(&str, usize)] = &[
        ("metadata.name>a", 13),
        ("metadata.name<=a", 13),
        ("status.restarts contains 1", 16),
        ("status.lastSeen notcontains 2", 16),
        ("spec.approved>true", 13),
        ("spec.approved contains t", 14),
    ];
    for (text, offset) in wrong_operator {
        let error = FieldSelector::parse_for::<Probe>(text).expect_err(text);
        assert!(
            matches!(error.kind, SelectorErrorKind::OperatorNotForField { .. }),
            "{text}: {error}"
        );
        assert_eq!(error.offset, *offset, "{text}");
    }

    let bad_value: &[(&str, usize)] = &[
        ("status.restarts>x", 16),
        ("status.restarts in (1,x)", 22),
        ("status.restarts=", 16),
        ("status.lastSeen>2026-03-01", 16),
        ("status.lastSeen>yesterday", 16),
        ("spec.approved=yes", 14),
    ];
    for (text, offset) in bad_value {
        let error = FieldSelector::parse_for::<Probe>(text).expect_err(text);
        assert!(
            matches!(error.kind, SelectorErrorKind::InvalidFieldValue { .. }),
            "{text}: {error}"
        );
        assert_eq!(error.offset, *offset, "{text}");
    }

    let syntax: &[(&str, usize)] = &[
        ("metadata.name=a||b=c", 18),
        ("metadata.name==a==b", 16),
        ("!metadata.name=a", 14),
        ("metadata.name in (a b)", 20),
        ("metadata.name in ()", 14),
        ("metadata.name contains", 22),
        ("metadata.name,", 14),
        ("metadata.name=a,,", 16),
    ];
    for (text, offset) in syntax {
        let error = FieldSelector::parse_for::<Probe>(text).expect_err(text);
        assert_eq!(error.offset, *offset, "{text}: {error}");
    }
}

#[test]
fn metadata_fields_are_readable() {
    let mut metadata = probe().metadata;
    assert!(METADATA_FIELDS.iter().any(|f| f.path == "metadata.name"));
    assert_eq!(
        metadata_field_value(&metadata, "metadata.namespace"),
        Some(FieldValue::String("factory".into()))
    );
    assert_eq!(metadata_field_value(&metadata, "metadata.uid"), None);
    let stamp: k8s_openapi::jiff::Timestamp = "2026-01-02T03:04:05Z".parse().expect("timestamp");
    metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(stamp));
    assert_eq!(
        metadata_field_value(&metadata, "metadata.creationTimestamp"),
        Some(FieldValue::Timestamp(datetime!(2026-01-02 03:04:05 UTC)))
    );
}

#[test]
fn flotta_resources_are_selectable() {
    use flotta_core::model::{EdgeDevice, EdgeDeviceSet, EdgeDeviceSignedRequest, EdgeWorkload};
    use flotta_core::selector::Selector;

    let device: EdgeDevice = serde_json::from_value(serde_json::json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeDevice",
        "metadata": {"name": "cam-7", "namespace": "plant", "labels": {"tier": "edge"}},
        "spec": {"osInformation": {"commitID": "c0ffee"}},
        "status": {"phase": "up", "lastSeen": "2026-05-01T10:00:00Z"}
    }))
    .expect("device fixture");
    let select = |text: &str| {
        FieldSelector::parse_for::<EdgeDevice>(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .matches(&device)
    };
    assert!(select("metadata.name=cam-7,status.phase=up"));
    assert!(select("status.lastSeen>=2026-05-01T10:00:00Z"));
    assert!(!select("status.lastSeen<2026-05-01T09:00:00Z"));
    assert!(select("spec.osInformation.commitID contains ffe"));
    assert!(select("!spec.requestTime"));
    let error = FieldSelector::parse_for::<EdgeDevice>("status.lastSeen contains 2026")
        .expect_err("contains is for strings");
    assert!(
        matches!(error.kind, SelectorErrorKind::OperatorNotForField { .. }),
        "{error:?}"
    );
    assert!(
        "tier=edge"
            .parse::<Selector>()
            .expect("valid")
            .matches(&device)
    );

    let workload: EdgeWorkload = serde_json::from_value(serde_json::json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeWorkload",
        "metadata": {"name": "nginx", "namespace": "plant"},
        "spec": {"type": "pod", "pod": {"spec": {"containers": []}}},
        "status": {"phaseCounts": {"deploying": 0, "running": 12, "failed": 1, "unknown": 0}}
    }))
    .expect("workload fixture");
    let running =
        FieldSelector::parse_for::<EdgeWorkload>("status.phaseCounts.running>10,spec.type=pod")
            .expect("valid");
    assert!(running.matches(&workload));
    let failed =
        FieldSelector::parse_for::<EdgeWorkload>("status.phaseCounts.failed=0").expect("valid");
    assert!(!failed.matches(&workload));

    let error =
        FieldSelector::parse_for::<EdgeDeviceSet>("status.phase=up").expect_err("no phase on sets");
    assert!(error.to_string().contains("status.deviceCount"), "{error}");
    assert!(FieldSelector::parse_for::<EdgeDeviceSignedRequest>("spec.approved=true").is_ok());
}
