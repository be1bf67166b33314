//! Malformed manifests each fail with the expected error, and none panics.

use flotta_core::manifest::{MAX_MANIFEST_BYTES, ManifestError, parse_manifests};
use flotta_core::validation::Validate;

const DEVICE_HEAD: &str = "apiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeDevice\nmetadata:\n  name: dev-1\n";

/// Parse errors: (what, manifest, expected document index, expected path).
fn parse_cases() -> Vec<(&'static str, String, Option<usize>, Option<&'static str>)> {
    vec![
        (
            "wrong type",
            format!("{DEVICE_HEAD}spec:\n  heartbeat:\n    periodSeconds: often\n"),
            Some(0),
            Some("spec.heartbeat.periodSeconds"),
        ),
        (
            "wrong type in the second document",
            format!("{DEVICE_HEAD}---\n{DEVICE_HEAD}spec:\n  mounts: {{}}\n"),
            Some(1),
            Some("spec.mounts"),
        ),
        (
            "wrong type inside the pod spec",
            "apiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeWorkload\nmetadata:\n  name: w\nspec:\n  type: pod\n  pod:\n    spec:\n      containers:\n        - name: c\n          ports:\n            - containerPort: eighty\n".to_owned(),
            Some(0),
            Some("spec.pod.spec.containers[0].ports[0].containerPort"),
        ),
        (
            "unknown kind",
            "apiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeGadget\nmetadata:\n  name: x\n".to_owned(),
            Some(0),
            Some("kind"),
        ),
        (
            "missing kind",
            "apiVersion: v1\nmetadata:\n  name: x\n".to_owned(),
            Some(0),
            Some("kind"),
        ),
        (
            "missing required spec of a workload",
            "apiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeWorkload\nmetadata:\n  name: w\n".to_owned(),
            Some(0),
            Some("."),
        ),
        (
            "missing required targetNamespace",
            "apiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeDeviceSignedRequest\nmetadata:\n  name: d\nspec:\n  approved: true\n".to_owned(),
            Some(0),
            Some("spec"),
        ),
        (
            "missing apiVersion",
            "kind: EdgeDevice\nmetadata:\n  name: d\n".to_owned(),
            Some(0),
            Some("."),
        ),
        (
            "unknown field inside the pod spec",
            "apiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeWorkload\nmetadata:\n  name: w\nspec:\n  type: pod\n  pod:\n    spec:\n      containers:\n        - name: c\n          imagePullPolicyy: Always\n".to_owned(),
            Some(0),
            Some("spec.pod.spec.containers[0].imagePullPolicyy"),
        ),
        (
            "unknown field in metadata",
            format!("{DEVICE_HEAD}  colour: blue\n"),
            Some(0),
            Some("metadata.colour"),
        ),
        (
            "not a mapping",
            "- just\n- a list\n".to_owned(),
            Some(0),
            None,
        ),
        ("invalid YAML", "kind: [unclosed\n".to_owned(), Some(0), None),
        ("invalid JSON", "{\"kind\": ".to_owned(), Some(0), None),
    ]
}

#[test]
fn malformed_manifests_fail_with_document_and_path() {
    for (what, manifest, index, path) in parse_cases() {
        let result = std::panic::catch_unwind(|| parse_manifests(&manifest));
        let Ok(result) = result else {
            panic!("{what}: parse panicked");
        };
        let err = match result {
            Ok(resources) => panic!("{what}: accepted as {resources:?}"),
            Err(err) => err,
        };
        assert_eq!(err.document_index(), index, "{what}: {err}");
        assert_eq!(err.field_path(), path, "{what}: {err}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn unknown_kind_error_names_the_kind() {
    let err = parse_manifests("kind: EdgeGadget\napiVersion: x\n").expect_err("unknown kind");
    assert!(matches!(&err, ManifestError::UnknownKind { kind, .. } if kind == "EdgeGadget"));
    assert!(err.to_string().contains("EdgeGadget"), "{err}");
}

#[test]
fn missing_field_error_says_which() {
    let err = parse_manifests(
        "apiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeDeviceSignedRequest\nmetadata:\n  name: d\nspec: {}\n",
    )
    .expect_err("missing targetNamespace");
    assert!(err.to_string().contains("targetNamespace"), "{err}");
}

#[test]
fn ten_megabyte_document_is_refused_before_parsing() {
    let filler = "x".repeat(10 * 1024 * 1024);
    let manifest = format!("{DEVICE_HEAD}  annotations:\n    big: {filler}\n");
    let err = parse_manifests(&manifest).expect_err("too large");
    match err {
        ManifestError::TooLarge { size, limit } => {
            assert_eq!(size, manifest.len());
            assert_eq!(limit, MAX_MANIFEST_BYTES);
        }
        other => panic!("expected TooLarge, got {other}"),
    }
}

#[test]
fn deeply_nested_input_is_refused_without_overflow() {
    let deep = 100_000;
    let cases = [
        (
            "flow YAML",
            format!(
                "{DEVICE_HEAD}spec:\n  x: {}{}\n",
                "[".repeat(deep),
                "]".repeat(deep)
            ),
        ),
        (
            "flow JSON",
            format!("{}{}", "[".repeat(deep), "]".repeat(deep)),
        ),
        (
            "block YAML",
            (0..1_000)
                .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
                .collect::<String>(),
        ),
        (
            "compact sequences",
            format!("{DEVICE_HEAD}spec:\n  x:\n  {}1\n", "- ".repeat(deep)),
        ),
    ];
    for (what, manifest) in cases {
        let err = parse_manifests(&manifest).expect_err(what);
        assert!(
            matches!(
                err,
                ManifestError::TooDeep { .. } | ManifestError::Yaml { .. }
            ),
            "{what}: {err}"
        );
    }
}

#[test]
fn alias_expansion_does_not_blow_up() {
    let mut manifest = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..20 {
        let prev = i - 1;
        manifest.push_str(&format!(
            "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
        ));
    }
    let error = parse_manifests(&manifest).expect_err("a billion laughs");
    assert!(matches!(error, ManifestError::Yaml { .. }), "{error:?}");
}

/// Validation errors: (what, manifest, expected error lines).
fn validation_cases() -> Vec<(&'static str, String, Vec<&'static str>)> {
    vec![
        (
            "invalid name and labels",
            "apiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeDevice\nmetadata:\n  name: Dev_1\n  labels:\n    bad key: v\n    ok: not ok!\nspec: {}\n".to_owned(),
            vec![
                "metadata.name: must consist of lowercase letters, digits, '-' and '.', and start and end with a letter or digit, got \"Dev_1\"",
                "metadata.labels[\"bad key\"]: invalid label key 'bad key': name part must consist of alphanumerics, '-', '_' or '.', and start and end with an alphanumeric",
                "metadata.labels[\"ok\"]: invalid label value 'not ok!': must be empty or consist of alphanumerics, '-', '_' or '.', and start and end with an alphanumeric",
            ],
        ),
        (
            "heartbeat period zero",
            format!("{DEVICE_HEAD}spec:\n  heartbeat:\n    periodSeconds: 0\n"),
            vec!["spec.heartbeat.periodSeconds: must be at least 1, got 0"],
        ),
        (
            "wrong apiVersion",
            "apiVersion: v1\nkind: EdgeDevice\nmetadata:\n  name: d\n".to_owned(),
            vec!["apiVersion: must be \"management.project-flotta.io/v1alpha1\", got \"v1\""],
        ),
        (
            "Flotta admission rules",
            "apiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeWorkload\nmetadata:\n  name: w\nspec:\n  type: pod\n  pod:\n    spec:\n      containers:\n        - name: app\n          livenessProbe:\n            exec:\n              command: [\"true\"]\n          resources:\n            limits:\n              cpu: \"1\"\n          ports:\n            - containerPort: 9100\n              hostPort: 9100\n        - name: app\n      volumes:\n        - name: cfg\n          emptyDir: {}\n".to_owned(),
            vec![
                "spec.pod.spec.containers[0].livenessProbe: probes are not supported on edge devices",
                "spec.pod.spec.containers[0].resources.limits: resource limits are not supported on edge devices",
                "spec.pod.spec.containers[0].ports[0].hostPort: 9100 is reserved for the device's metrics exporter",
                "spec.pod.spec.containers[1].name: container name \"app\" is used more than once",
                "spec.pod.spec.volumes[0]: only hostPath, configMap and secret volumes are supported on edge devices, got emptyDir",
            ],
        ),
        (
            "bad rollout policy and selector",
            "apiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeWorkload\nmetadata:\n  name: w\nspec:\n  type: container\n  deviceSelector:\n    matchExpressions:\n      - key: site\n        operator: Near\n  rolloutPolicy:\n    batches:\n      - limit: 0\n      - limit: 150%\n    successThreshold: 90\n  pod:\n    spec:\n      containers:\n        - name: app\n".to_owned(),
            vec![
                "spec.type: must be one of pod, got \"container\"",
                "spec.deviceSelector.matchExpressions[0].operator: must be one of In, NotIn, Exists, DoesNotExist, got \"Near\"",
                "spec.rolloutPolicy.batches[0].limit: must be at least 1, got 0",
                "spec.rolloutPolicy.batches[1].limit: must be a count or a percentage from 1% to 100%, got \"150%\"",
                "spec.rolloutPolicy.successThreshold: must be a percentage such as \"90%\", got 90",
            ],
        ),
        (
            "bad files and template parameters",
            "apiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeDeviceSet\nmetadata:\n  name: s\nspec:\n  files:\n    - path: etc/x\n      content: a\n    - path: /etc/y\n      content: '***'\n      encoding: base64\n      mode: '999'\n  template:\n    metadata:\n      labels:\n        zone: '{{ .metadata.uid }}'\n".to_owned(),
            vec![
                "spec.files[0].path: must be an absolute path, got \"etc/x\"",
                "spec.files[1].content: is not valid base64",
                "spec.files[1].mode: must be 3 or 4 octal digits such as \"0644\", got \"999\"",
                "spec.template.metadata.labels[\"zone\"]: unknown parameter {{ .metadata.uid }}; use .metadata.name, .metadata.labels.KEY or getOrDefault .metadata.labels \"KEY\" \"DEFAULT\"",
            ],
        ),
        (
            "bad enrolment request",
            "apiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeDeviceSignedRequest\nmetadata:\n  name: d\nspec:\n  targetNamespace: Not_A_Namespace\nstatus:\n  conditions:\n    - type: maybe\n      status: \"True\"\n".to_owned(),
            vec![
                "spec.targetNamespace: must consist of lowercase letters, digits and '-', and start and end with a letter or digit, got \"Not_A_Namespace\"",
                "status.conditions[0].type: must be one of declined, approved, pending, got \"maybe\"",
            ],
        ),
    ]
}

#[test]
fn invalid_resources_report_every_problem() {
    for (what, manifest, expected) in validation_cases() {
        let resources = parse_manifests(&manifest).unwrap_or_else(|e| panic!("{what}: {e}"));
        let [resource] = resources.as_slice() else {
            panic!("{what}: expected one resource");
        };
        let errors: Vec<String> = resource
            .validate()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors, expected, "{what}");
    }
}
