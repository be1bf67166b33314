use super::*;
use serde_json::json;

/// The playbook of Flotta's sample, as the API carries it.
const HELLO: &str = "- name: Hello\n  hosts: 127.0.0.1\n  gather_facts: false\n  tasks:\n    - copy:\n        content: hello\n        dest: /tmp/hello.txt\n";

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn config(name: &str, playbook: serde_json::Value) -> EdgeConfig {
    serde_json::from_value(json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeConfig",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"edgePlaybook": {"playbooks": [playbook]}},
    }))
    .expect("config")
}

fn device(name: &str, label: Option<&str>) -> EdgeDevice {
    let labels = label
        .map(|l| json!({EDGE_CONFIG_LABEL: l}))
        .unwrap_or(json!({}));
    serde_json::from_value(json!({
        "apiVersion": "management.project-flotta.io/v1alpha1",
        "kind": "EdgeDevice",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {},
    }))
    .expect("device")
}

fn now() -> Time {
    serde_json::from_value(json!("2026-12-04T10:00:00Z")).expect("time")
}

fn report(name: &str, state: &str, message: Option<&str>) -> wire::PlaybookExecutionStatus {
    wire::PlaybookExecutionStatus {
        name: Some(name.into()),
        status: Some(state.into()),
        message: message.map(str::to_owned),
        ..Default::default()
    }
}

fn paths(problems: &[FieldError]) -> Vec<&str> {
    problems.iter().map(|p| p.path.as_str()).collect()
}

#[test]
fn flottas_sample_edge_config_is_valid() {
    let sample = config(
        "edgeconfig-sample",
        json!({"content": b64(HELLO), "timeoutSeconds": 150}),
    );
    assert_eq!(sample.validate(), vec![]);
}

#[test]
fn what_cannot_be_honoured_is_refused_with_its_field() {
    let bad = config(
        "c",
        json!({"content": "not base64!", "timeoutSeconds": 0,
            "requiredPrivilegeLevel": {"capAdd": [12]},
            "executionStrategy": "Parallel",
            "privilegeEscalationOptions": {"become": true, "becomeMethod": "doas"},
            "retries": 3}),
    );
    let problems = bad.validate();
    let at = "spec.edgePlaybook.playbooks[0]";
    for path in [
        format!("{at}.content"),
        format!("{at}.timeoutSeconds"),
        format!("{at}.requiredPrivilegeLevel"),
        format!("{at}.executionStrategy"),
        format!("{at}.privilegeEscalationOptions.becomeMethod"),
        format!("{at}.retries"),
    ] {
        assert!(
            paths(&problems).contains(&path.as_str()),
            "{path}: {problems:?}"
        );
    }
    let not_plays = config("c", json!({"content": b64("just: a map\n")}));
    assert!(
        not_plays.validate()[0]
            .message
            .contains("not a list of plays")
    );
    let mut two = config("c", json!({"content": b64(HELLO)}));
    let first = two.spec.edge_playbook.as_ref().expect("playbook").playbooks[0].clone();
    let playbook = two.spec.edge_playbook.as_mut().expect("playbook");
    playbook.playbooks.push(first);
    playbook.user = Some("root".into());
    playbook.execution_attempts = Some(11);
    playbook.timeout_seconds = Some(-1);
    let problems = two.validate();
    assert_eq!(
        paths(&problems),
        [
            "spec.edgePlaybook.playbooks",
            "spec.edgePlaybook.user",
            "spec.edgePlaybook.timeoutSeconds",
            "spec.edgePlaybook.executionAttempts"
        ]
    );
}

#[test]
fn labelled_devices_get_one_execution_of_their_config() {
    let hello = config(
        "hello",
        json!({"content": b64(HELLO), "timeoutSeconds": 30}),
    );
    let mut attempts = hello.clone();
    attempts
        .spec
        .edge_playbook
        .as_mut()
        .expect("p")
        .execution_attempts = Some(3);
    let mut going = device("gone", Some("hello"));
    going.metadata.deletion_timestamp = Some(now());
    let devices = [
        device("dev-1", Some("hello")),
        device("dev-2", None),
        device("dev-3", Some("missing")),
        going,
    ];
    let executions = desired_executions(&devices, &[attempts]);
    assert_eq!(executions.len(), 1);
    let execution = &executions[0];
    assert_eq!(execution.metadata.name.as_deref(), Some("dev-1-hello"));
    assert_eq!(execution.metadata.namespace.as_deref(), Some("default"));
    let labels = execution.metadata.labels.as_ref().expect("labels");
    assert_eq!(labels[DEVICE_LABEL], "dev-1");
    assert_eq!(labels[EDGE_CONFIG_OWNER_LABEL], "hello");
    assert_eq!(execution.spec.execution_attempt, Some(3));
    assert_eq!(execution.spec.playbook.timeout_seconds, Some(30));
    assert_eq!(execution.validate(), vec![]);
    // An invalid config makes none.
    let broken = config("hello", json!({"content": "%%%"}));
    assert!(desired_executions(&devices, &[broken]).is_empty());
}

#[test]
fn a_device_is_sent_its_unfinished_execution_with_how_to_run_it() {
    let hello = config(
        "hello",
        json!({"content": b64(HELLO), "timeoutSeconds": 30,
            "ansibleOptions": {"check": true},
            "privilegeEscalationOptions": {"become": true, "becomeUser": "root"}}),
    );
    let device = device("dev-1", Some("hello"));
    let mut execution = execution_for("dev-1", &hello).expect("execution");
    let labels = device.metadata.labels.as_ref();
    let served = served_executions("dev-1", labels, std::slice::from_ref(&execution));
    assert_eq!(served.len(), 1);
    let sent = &served[0];
    assert_eq!(sent.name.as_deref(), Some("dev-1-hello"));
    assert_eq!(sent.ansible_playbook_string.as_deref(), Some(HELLO));
    assert_eq!(sent.timeout_seconds, Some(30));
    assert_eq!(sent.check, Some(true));
    assert_eq!(sent.become_, Some(true));
    assert_eq!(sent.become_user.as_deref(), Some("root"));
    assert_eq!(sent.attempts, Some(1));
    assert!(sent.revision.as_deref().is_some_and(|r| r.len() == 24));
    // Flotta's field names on the wire.
    let wire = serde_json::to_value(sent).expect("json");
    assert_eq!(wire["ansible_playbook_string"], HELLO);
    assert_eq!(wire["become"], true);
    // Not one made for another device under this name.
    let mut foreign = execution.clone();
    foreign
        .metadata
        .labels
        .as_mut()
        .expect("labels")
        .insert(DEVICE_LABEL.into(), "dev-9".into());
    assert!(served_executions("dev-1", labels, &[foreign]).is_empty());
    // Not to another device, not once finished, not without the label.
    assert!(served_executions("dev-2", labels, std::slice::from_ref(&execution)).is_empty());
    assert!(served_executions("dev-1", None, std::slice::from_ref(&execution)).is_empty());
    assert!(manager_configuration(labels).is_some());
    assert!(manager_configuration(None).is_none());
    execution.status = record_report(
        None,
        &report("dev-1-hello", "SuccessfullyCompleted", None),
        &now(),
    );
    assert_eq!(current_state(&execution), Some("SuccessfullyCompleted"));
    assert!(served_executions("dev-1", labels, std::slice::from_ref(&execution)).is_empty());
    // Done: the device's label goes, unless it names another config by now.
    assert!(belongs_to(&execution, "dev-1") && !belongs_to(&execution, "dev-2"));
    let after = labels_after_final(labels.expect("labels"), &execution).expect("changed");
    assert!(!after.contains_key(EDGE_CONFIG_LABEL));
    let other = BTreeMap::from([(EDGE_CONFIG_LABEL.to_owned(), "other".to_owned())]);
    assert!(labels_after_final(&other, &execution).is_none());
}

#[test]
fn reports_become_conditions_the_current_one_true() {
    let deploying = record_report(None, &report("e", "Deploying", None), &now()).expect("new");
    assert!(record_report(Some(&deploying), &report("e", "Deploying", None), &now()).is_none());
    let running =
        record_report(Some(&deploying), &report("e", "Running", None), &now()).expect("new");
    let failed = record_report(
        Some(&running),
        &report(
            "e",
            "CompletedWithError",
            Some("task 'copy' failed: Destination not writable"),
        ),
        &now(),
    )
    .expect("new");
    let conditions = failed.conditions.expect("conditions");
    let states: Vec<(&str, &str)> = conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            ("Deploying", "False"),
            ("Running", "False"),
            ("CompletedWithError", "True")
        ]
    );
    assert_eq!(
        conditions[2].message.as_deref(),
        Some("task 'copy' failed: Destination not writable")
    );
    assert!(is_final("CompletedWithError") && !is_final("Running"));
}

#[test]
fn reports_are_checked_and_device_entries_follow_them() {
    assert!(
        check_report(
            &report("e", "Running", None),
            "content.playbook-executions[0]"
        )
        .is_ok()
    );
    let error = check_report(&report("e", "Done", None), "content.playbook-executions[0]")
        .expect_err("unknown state");
    assert!(
        error.starts_with("content.playbook-executions[0].status: \"Done\" is not one of"),
        "{error}"
    );
    let unnamed = wire::PlaybookExecutionStatus {
        status: Some("Running".into()),
        ..Default::default()
    };
    assert!(check_report(&unnamed, "x").is_err());
    let entries = device_entries(None, &[report("a", "Running", None)], &now());
    let entries = device_entries(Some(&entries), &[report("b", "Deploying", None)], &now());
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn conditions_are_bounded() {
    let mut status = None;
    for i in 0..40 {
        let state = if i % 2 == 0 { "Running" } else { "Deploying" };
        status = record_report(status.as_ref(), &report("e", state, None), &now()).or(status);
    }
    assert_eq!(
        status.and_then(|s| s.conditions).map(|c| c.len()),
        Some(MAX_CONDITIONS)
    );
}
