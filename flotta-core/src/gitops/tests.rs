use super::*;
use crate::model::{LocalObjectRef, RepositorySpec, ResourceSyncSpec};

fn file(path: &str, text: &str) -> (String, String) {
    (path.to_owned(), text.to_owned())
}

const WORKLOAD: &str = "apiVersion: management.project-flotta.io/v1alpha1
kind: EdgeWorkload
metadata:
  name: web
spec:
  deviceSelector:
    matchLabels: {site: a}
  type: pod
  pod:
    spec:
      containers:
      - name: web
        image: quay.io/example/web:1
";

const CONFIG_MAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: site
data:
  zone: a
";

fn at(second: i64) -> Time {
    Time(jiff::Timestamp::from_second(second).expect("in range"))
}

#[test]
fn poll_intervals_read_units_and_refuse_the_rest() {
    assert_eq!(poll_interval(None), Ok(DEFAULT_POLL_INTERVAL));
    assert_eq!(poll_interval(Some("30s")), Ok(Duration::from_secs(30)));
    assert_eq!(poll_interval(Some("5m")), Ok(Duration::from_secs(300)));
    assert_eq!(poll_interval(Some("1h30m")), Ok(Duration::from_secs(5400)));
    for bad in ["", "30", "5x", "m", "0s", "-1s", "99999999999999999999h"] {
        let error = poll_interval(Some(bad)).expect_err(bad);
        assert!(error.contains(&format!("{bad:?}")), "{error}");
    }
}

#[test]
fn a_path_names_a_file_or_every_manifest_below_a_directory() {
    let listing: Vec<String> = [
        "README.md",
        "fleet/a.yaml",
        "fleet/sub/b.yml",
        "fleet/c.json",
        "fleet/notes.txt",
        "fleetwide.yaml",
        "other/d.yaml",
    ]
    .map(str::to_owned)
    .to_vec();
    assert_eq!(
        files_under("fleet", &listing).unwrap(),
        ["fleet/a.yaml", "fleet/c.json", "fleet/sub/b.yml"]
    );
    assert_eq!(
        files_under("/fleet/", &listing).unwrap(),
        files_under("fleet", &listing).unwrap()
    );
    assert_eq!(
        files_under("/other/d.yaml", &listing).unwrap(),
        ["other/d.yaml"]
    );
    assert_eq!(files_under("/", &listing).unwrap().len(), 5);
    let missing = files_under("nowhere", &listing).unwrap_err();
    assert!(
        missing.contains("\"nowhere\" is neither a file nor a directory"),
        "{missing}"
    );
    assert!(
        files_under("fleet/../other", &listing)
            .unwrap_err()
            .contains("..")
    );
}

#[test]
fn a_commit_defines_owned_objects_in_the_sync_namespace() {
    let objects = read_commit(
        "team-a",
        "fleet",
        &[file("a.yaml", &format!("{WORKLOAD}---\n{CONFIG_MAP}"))],
    )
    .unwrap();
    assert_eq!(objects.len(), 2);
    assert_eq!(objects[0].kind, ResourceKind::EdgeWorkload);
    assert_eq!(objects[0].name, "web");
    assert_eq!(objects[0].file, "a.yaml");
    assert_eq!(objects[1].kind, ResourceKind::ConfigMap);
    for object in &objects {
        assert_eq!(object.body["metadata"]["namespace"], "team-a");
        assert_eq!(object.body["metadata"]["labels"][OWNER_LABEL], "fleet");
        assert!(owned_by(&object.body, "fleet"));
        assert!(!owned_by(&object.body, "other"));
    }
}

#[test]
fn every_problem_names_its_file_and_document() {
    let problems = read_commit(
        "team-a",
        "fleet",
        &[
            file("good.yaml", CONFIG_MAP),
            file(
                "bad.yaml",
                &format!(
                    "{WORKLOAD}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x, namespace: team-b}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: r}}\nrules: []\n"
                ),
            ),
            file("broken.yaml", "kind: [unclosed\n"),
            file("twice.yaml", CONFIG_MAP),
            file(
                "invalid.yaml",
                "apiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeWorkload\nmetadata: {name: w}\nspec: {type: vm, pod: {spec: {containers: [{name: c, image: x}]}}}\n",
            ),
        ],
    )
    .unwrap_err();
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let find = |needle: &str| {
        shown
            .iter()
            .find(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no problem with {needle:?} in {shown:#?}"))
            .clone()
    };
    assert!(find("team-b").starts_with("bad.yaml (document 1): metadata.namespace"));
    assert!(find("kind Role cannot be synced").starts_with("bad.yaml (document 2)"));
    assert!(find("broken.yaml").starts_with("broken.yaml"));
    assert!(find("defined more than once").starts_with("twice.yaml (document 0)"));
    assert!(find("invalid.yaml").contains("spec.type"), "{shown:#?}");
    assert!(!find("broken.yaml").contains("document 0: document 0"));
    assert_eq!(problems.len(), 5, "{shown:#?}");
}

#[test]
fn an_object_labelled_for_another_sync_is_refused() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  labels: {management.project-flotta.io/resourcesync: other}\n";
    let problems = read_commit("ns", "fleet", &[file("x.yaml", text)]).unwrap_err();
    assert!(problems[0].message.contains("another sync"), "{problems:?}");
}

#[test]
fn only_owned_objects_missing_from_the_commit_are_pruned() {
    let objects = read_commit("ns", "fleet", &[file("a.yaml", CONFIG_MAP)]).unwrap();
    let owned = vec![
        (ResourceKind::ConfigMap, "site".to_owned()),
        (ResourceKind::ConfigMap, "gone".to_owned()),
        (ResourceKind::EdgeWorkload, "site".to_owned()),
    ];
    assert_eq!(
        to_prune(&objects, &owned),
        [
            (ResourceKind::ConfigMap, "gone".to_owned()),
            (ResourceKind::EdgeWorkload, "site".to_owned())
        ]
    );
}

#[test]
fn differs_compares_what_git_defines() {
    let desired = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "x", "namespace": "ns", "labels": {"a": "1"}},
        "data": {"k": "v"}
    });
    let mut stored = desired.clone();
    stored["metadata"]["uid"] = "u".into();
    stored["metadata"]["resourceVersion"] = "7".into();
    stored["status"] = serde_json::json!({"x": 1});
    assert!(!differs(&desired, &stored));
    stored["data"]["k"] = "w".into();
    assert!(differs(&desired, &stored));
    stored["data"]["k"] = "v".into();
    stored["metadata"]["labels"]["b"] = "2".into();
    assert!(differs(&desired, &stored));
}

#[test]
fn status_keeps_the_applied_commit_when_a_later_one_is_broken() {
    let applied = sync_status(
        None,
        Some(1),
        &SyncReport::Applied {
            commit: "c1".into(),
            resources: vec![SyncedResource {
                kind: "ConfigMap".into(),
                name: "site".into(),
                outcome: "created".into(),
                message: None,
            }],
        },
        &at(100),
    );
    assert_eq!(applied.observed_commit.as_deref(), Some("c1"));
    assert_eq!(applied.observed_generation, Some(1));
    let types: Vec<(&str, &str)> = applied
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            (ACCESSIBLE, "True"),
            (RESOURCE_PARSED, "True"),
            (SYNCED, "True")
        ]
    );
    let broken = sync_status(
        Some(&applied),
        Some(1),
        &SyncReport::Unparsable {
            commit: "c2".into(),
            problems: vec![CommitProblem {
                file: "a.yaml".into(),
                document: Some(0),
                message: "bad".into(),
            }],
        },
        &at(200),
    );
    assert_eq!(broken.observed_commit.as_deref(), Some("c1"));
    assert_eq!(broken.resources, applied.resources);
    let parsed = &broken.conditions[1];
    assert_eq!(
        (parsed.status.as_str(), parsed.message.as_str()),
        ("False", "a.yaml (document 0): bad")
    );
    assert_eq!(parsed.last_transition_time, at(200));
    // Accessible stayed True: its transition time did not move.
    assert_eq!(broken.conditions[0].last_transition_time, at(100));
    let unreachable = sync_status(
        Some(&broken),
        Some(1),
        &SyncReport::Unreachable {
            message: "no route".into(),
        },
        &at(300),
    );
    assert_eq!(unreachable.conditions[0].status, "False");
    assert_eq!(unreachable.conditions[0].message, "no route");
    assert_eq!(unreachable.observed_commit.as_deref(), Some("c1"));
}

#[test]
fn repositories_and_syncs_are_validated() {
    let mut repository = Repository::new(
        "r",
        RepositorySpec {
            url: "https://git.example.com/fleet.git".into(),
            repo_type: "git".into(),
            secret_ref: Some(LocalObjectRef {
                name: "creds".into(),
            }),
            ..RepositorySpec::default()
        },
    );
    assert_eq!(repository.validate(), []);
    repository.spec.url = "ext::sh -c evil".into();
    repository.spec.repo_type = "oci".into();
    let paths: Vec<String> = repository.validate().into_iter().map(|p| p.path).collect();
    assert_eq!(paths, ["spec.url", "spec.type"]);

    let mut sync = ResourceSync::new(
        "fleet",
        ResourceSyncSpec {
            repository: "r".into(),
            target_revision: "main".into(),
            path: "/fleet".into(),
            poll_interval: Some("30s".into()),
            ..ResourceSyncSpec::default()
        },
    );
    assert_eq!(sync.validate(), []);
    sync.spec.target_revision = "--upload-pack=evil".into();
    sync.spec.path = "../etc".into();
    sync.spec.poll_interval = Some("soon".into());
    let paths: Vec<String> = sync.validate().into_iter().map(|p| p.path).collect();
    assert_eq!(
        paths,
        ["spec.targetRevision", "spec.path", "spec.pollInterval"]
    );
}

#[test]
fn webhooks_need_the_token_or_the_body_signature() {
    let secret = b"It's a Secret to Everybody";
    let body = b"Hello, World!";
    // The example of GitHub's webhook documentation.
    let signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert!(webhook_authorized(secret, None, Some(signature), body));
    assert!(!webhook_authorized(
        secret,
        None,
        Some(signature),
        b"Hello, World?"
    ));
    assert!(webhook_authorized(
        secret,
        Some("It's a Secret to Everybody"),
        None,
        b""
    ));
    assert!(!webhook_authorized(secret, Some("guess"), None, b""));
    assert!(!webhook_authorized(secret, None, None, body));
    assert!(!webhook_authorized(b"", Some(""), None, b""));
}

#[test]
fn a_repository_url_never_carries_a_password() {
    assert!(super::url_has_password(
        "https://me:secret@example.com/fleet.git"
    ));
    assert!(!super::url_has_password("ssh://git@example.com/fleet.git"));
    assert!(!super::url_has_password("https://example.com/a@b:c"));
    assert!(super::is_file_url("FILE:///srv/git/fleet.git"));
    assert!(!super::is_file_url("https://example.com/file://"));
}

#[test]
fn labels_and_annotations_git_does_not_name_are_kept() {
    let desired = serde_json::json!({
        "kind": "EdgeWorkload",
        "metadata": {"name": "web", "labels": {"app": "web", OWNER_LABEL: "fleet"}},
        "spec": {"type": "pod"},
    });
    let existing = serde_json::json!({
        "kind": "EdgeWorkload",
        "metadata": {
            "name": "web",
            "labels": {"app": "old", OWNER_LABEL: "fleet", "team": "a"},
            "annotations": {"rollout.example/paused": "true"},
        },
        "spec": {"type": "pod"},
    });
    let merged = merged_over(&desired, &existing);
    assert_eq!(
        merged["metadata"]["labels"]["app"], "web",
        "git wins on its own keys"
    );
    assert_eq!(merged["metadata"]["labels"]["team"], "a");
    assert_eq!(
        merged["metadata"]["annotations"]["rollout.example/paused"],
        "true"
    );
    assert!(differs(&merged, &existing), "the app label changed");
    let again = merged_over(&desired, &merged);
    assert!(!differs(&again, &merged), "a second sync changes nothing");
}

#[test]
fn writing_a_sync_needs_what_the_sync_does_and_a_repository_its_secret() {
    use crate::rbac::request::attributes;
    let base = "/apis/management.project-flotta.io/v1alpha1/namespaces/team-a";
    let sync = delegated_requests(&attributes("POST", &format!("{base}/resourcesyncs"), None));
    assert_eq!(sync.len(), SYNCABLE.len() * DELEGATED_VERBS.len());
    assert!(sync.iter().all(|r| r.namespace == "team-a"));
    assert!(
        sync.iter()
            .any(|r| r.resource == "secrets" && r.api_group.is_empty() && r.verb == "delete")
    );
    let patch = delegated_requests(&attributes(
        "PATCH",
        &format!("{base}/resourcesyncs/fleet"),
        None,
    ));
    assert_eq!(patch, sync);
    let repository = delegated_requests(&attributes(
        "PUT",
        &format!("{base}/repositories/fleet"),
        None,
    ));
    assert_eq!(repository.len(), 1);
    assert_eq!(
        (repository[0].verb.as_str(), repository[0].resource.as_str()),
        ("get", "secrets")
    );
    for (method, path) in [
        ("GET", format!("{base}/resourcesyncs")),
        ("DELETE", format!("{base}/resourcesyncs/fleet")),
        ("PUT", format!("{base}/resourcesyncs/fleet/status")),
        ("POST", format!("{base}/edgeworkloads")),
    ] {
        assert!(
            delegated_requests(&attributes(method, &path, None)).is_empty(),
            "{method} {path}"
        );
    }
}

#[test]
fn inline_credentials_and_unknown_spec_fields_are_refused() {
    let repository: Repository = serde_json::from_value(serde_json::json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "fleet"},
        "spec": {"url": "https://example.com/fleet.git", "type": "git",
                 "httpConfig": {"username": "me", "password": "pw"}},
    }))
    .expect("parses");
    let problems = repository.validate();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "spec.httpConfig");
    assert!(
        problems[0].message.contains("spec.secretRef"),
        "{problems:?}"
    );
    let sync: ResourceSync = serde_json::from_value(serde_json::json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "fleet"},
        "spec": {"repository": "fleet", "targetRevision": "main", "path": "/",
                 "prune": true},
    }))
    .expect("parses");
    let paths: Vec<String> = sync.validate().into_iter().map(|p| p.path).collect();
    assert!(paths.contains(&"spec.prune".to_owned()), "{paths:?}");
    assert!(paths.contains(&"kind".to_owned()), "{paths:?}");
}
