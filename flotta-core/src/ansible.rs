//! Ansible playbooks on devices, as Flotta runs them: what `EdgeConfig`s and
//! `PlaybookExecution`s mean, decided here and carried out by the server and the
//! agent.
//!
//! - A device labelled `config/device-by-config=<name>` runs the `EdgeConfig`
//!   `<name>` of its namespace. The server creates one `PlaybookExecution` per such
//!   device, named `<device>-<name>` ([`desired_executions`]), and never rewrites one
//!   that exists: an execution is the record of a run. To run a playbook again,
//!   delete its execution.
//! - A labelled device is sent `ansible-manager` in its configuration
//!   ([`manager_configuration`]), and then asks for its executions with the
//!   `ansible` directive; it is sent those not finished yet ([`served_executions`]).
//! - The device reports each execution's state in its heartbeats
//!   (`playbook-executions`); each new state becomes a condition of the execution
//!   ([`record_report`]) and an entry of the device's `status.PlaybookExec`
//!   ([`device_entries`]). Once an execution is finished, the server removes the
//!   device's label, as Flotta's operator does.

use std::collections::BTreeMap;

use base64::Engine as _;

use crate::model::{
    EdgeConfig, EdgeDevice, ObjectMeta, Playbook, PlaybookExec, PlaybookExecution,
    PlaybookExecutionSpec, PlaybookExecutionStatus, Resource, StatusCondition, Time,
};
use crate::validation::{FieldError, Validate};
use crate::wire;

/// The device label naming the `EdgeConfig` a device runs (Flotta's key).
pub const EDGE_CONFIG_LABEL: &str = "config/device-by-config";

/// The label of a `PlaybookExecution` naming its device.
pub const DEVICE_LABEL: &str = "management.project-flotta.io/device";

/// The label of a `PlaybookExecution` naming the `EdgeConfig` it comes from.
pub const EDGE_CONFIG_OWNER_LABEL: &str = "management.project-flotta.io/edgeconfig";

/// Seconds between two `ansible` requests of a labelled device.
pub const POLL_PERIOD_SECONDS: i64 = 15;

/// Largest playbook accepted, decoded.
pub const MAX_PLAYBOOK_BYTES: usize = 256 * 1024;

/// Most attempts an execution may ask for.
pub const MAX_ATTEMPTS: i64 = 10;

/// Conditions kept on an execution (the oldest are dropped beyond it).
const MAX_CONDITIONS: usize = 16;

/// The states a device reports, in Flotta's words.
pub const STATES: [&str; 5] = [
    "Deploying",
    "TargetVerification",
    "Running",
    "SuccessfullyCompleted",
    "CompletedWithError",
];

/// Whether `state` is a final one: the run is over.
pub fn is_final(state: &str) -> bool {
    matches!(state, "SuccessfullyCompleted" | "CompletedWithError")
}

/// The name of the execution of `edge_config` on `device`.
pub fn execution_name(device: &str, edge_config: &str) -> String {
    format!("{device}-{edge_config}")
}

/// The `EdgeConfig` a device is labelled to run, if any.
pub fn labelled_config(labels: Option<&BTreeMap<String, String>>) -> Option<&str> {
    labels?
        .get(EDGE_CONFIG_LABEL)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// The playbook YAML of a playbook's `content`, decoded and checked: base64 of
/// UTF-8 text of at most [`MAX_PLAYBOOK_BYTES`] that reads as a YAML list of plays.
pub fn decode_content(content: &str) -> Result<String, String> {
    if content.trim().is_empty() {
        return Err("required (the playbook's YAML, base64-encoded)".into());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(content.trim())
        .map_err(|e| format!("is not base64: {e}"))?;
    if bytes.len() > MAX_PLAYBOOK_BYTES {
        return Err(format!(
            "decodes to {} bytes, more than the {MAX_PLAYBOOK_BYTES} a playbook may have",
            bytes.len()
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| "does not decode to UTF-8 text".to_owned())?;
    let plays: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).map_err(|e| format!("decodes to invalid YAML: {e}"))?;
    match plays {
        serde_yaml_ng::Value::Sequence(plays) if !plays.is_empty() => Ok(text),
        _ => Err("decodes to YAML that is not a list of plays".into()),
    }
}

fn push(problems: &mut Vec<FieldError>, path: String, message: impl Into<String>) {
    problems.push(FieldError {
        path,
        message: message.into(),
    });
}

fn unknown_fields(problems: &mut Vec<FieldError>, at: &str, extra: &crate::model::UnknownFields) {
    crate::validation::unknown_fields(problems, at, extra, "");
}

/// The problems of one playbook at `at` (e.g. `spec.playbook`).
fn playbook_problems(playbook: &Playbook, at: &str) -> Vec<FieldError> {
    let mut problems = Vec::new();
    if let Err(why) = decode_content(&playbook.content) {
        push(&mut problems, format!("{at}.content"), why);
    }
    problems.extend(timeout_problem(
        playbook.timeout_seconds,
        &format!("{at}.timeoutSeconds"),
    ));
    if let Some(options) = &playbook.ansible_options {
        unknown_fields(
            &mut problems,
            &format!("{at}.ansibleOptions"),
            &options.extra,
        );
    }
    if let Some(escalation) = &playbook.privilege_escalation_options {
        let path = format!("{at}.privilegeEscalationOptions");
        if let Some(method) = &escalation.become_method
            && method != "sudo"
            && method != "su"
        {
            push(
                &mut problems,
                format!("{path}.becomeMethod"),
                format!("{method:?} is not sudo or su"),
            );
        }
        if let Some(user) = &escalation.become_user
            && (user.is_empty() || user.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            push(
                &mut problems,
                format!("{path}.becomeUser"),
                "must be a user name (no spaces or control characters)",
            );
        }
        unknown_fields(&mut problems, &path, &escalation.extra);
    }
    if let Some(level) = &playbook.required_privilege_level {
        let asks = level.cap_add.as_ref().is_some_and(|c| !c.is_empty())
            || level.cap_drop.as_ref().is_some_and(|c| !c.is_empty());
        if asks {
            push(
                &mut problems,
                format!("{at}.requiredPrivilegeLevel"),
                "capabilities cannot be granted or dropped: the agent runs ansible-playbook with its own (use privilegeEscalationOptions to become another user)",
            );
        }
        unknown_fields(
            &mut problems,
            &format!("{at}.requiredPrivilegeLevel"),
            &level.extra,
        );
    }
    if let Some(strategy) = &playbook.execution_strategy {
        push(
            &mut problems,
            format!("{at}.executionStrategy"),
            format!(
                "{strategy:?} is not supported: a playbook runs once per execution (delete the PlaybookExecution to run it again)"
            ),
        );
    }
    unknown_fields(&mut problems, at, &playbook.extra);
    problems
}

fn timeout_problem(timeout: Option<i64>, path: &str) -> Option<FieldError> {
    let timeout = timeout?;
    (timeout <= 0).then(|| FieldError {
        path: path.to_owned(),
        message: format!("must be positive, not {timeout}"),
    })
}

fn attempts_problem(attempts: Option<i64>, path: &str, minimum: i64) -> Option<FieldError> {
    let attempts = attempts?;
    (!(minimum..=MAX_ATTEMPTS).contains(&attempts)).then(|| FieldError {
        path: path.to_owned(),
        message: format!("{attempts} is not between {minimum} and {MAX_ATTEMPTS}"),
    })
}

impl Validate for EdgeConfig {
    fn validate(&self) -> Vec<FieldError> {
        let mut problems = crate::validation::type_and_metadata_problems(
            &self.api_version,
            &self.kind,
            Self::KIND,
            &self.metadata,
        );
        unknown_fields(&mut problems, "spec", &self.spec.extra);
        let Some(edge_playbook) = &self.spec.edge_playbook else {
            push(&mut problems, "spec.edgePlaybook".into(), "required");
            return problems;
        };
        match edge_playbook.playbooks.len() {
            0 => push(
                &mut problems,
                "spec.edgePlaybook.playbooks".into(),
                "must hold one playbook",
            ),
            1 => problems.extend(playbook_problems(
                &edge_playbook.playbooks[0],
                "spec.edgePlaybook.playbooks[0]",
            )),
            n => push(
                &mut problems,
                "spec.edgePlaybook.playbooks".into(),
                format!(
                    "holds {n} playbooks: flotta-rs runs one per EdgeConfig (put the plays in one playbook, or use one EdgeConfig each)"
                ),
            ),
        }
        if edge_playbook.user.is_some() {
            push(
                &mut problems,
                "spec.edgePlaybook.user".into(),
                "is not supported: the agent runs playbooks as its own user (use privilegeEscalationOptions.becomeUser)",
            );
        }
        problems.extend(timeout_problem(
            edge_playbook.timeout_seconds,
            "spec.edgePlaybook.timeoutSeconds",
        ));
        problems.extend(attempts_problem(
            edge_playbook.execution_attempts,
            "spec.edgePlaybook.executionAttempts",
            1,
        ));
        unknown_fields(&mut problems, "spec.edgePlaybook", &edge_playbook.extra);
        problems
    }
}

impl Validate for PlaybookExecution {
    fn validate(&self) -> Vec<FieldError> {
        let mut problems = crate::validation::type_and_metadata_problems(
            &self.api_version,
            &self.kind,
            Self::KIND,
            &self.metadata,
        );
        problems.extend(playbook_problems(&self.spec.playbook, "spec.playbook"));
        problems.extend(attempts_problem(
            self.spec.execution_attempt,
            "spec.executionAttempt",
            0,
        ));
        unknown_fields(&mut problems, "spec", &self.spec.extra);
        problems
    }
}

/// The executions the devices' labels ask for: one per device (not being deleted)
/// labelled with the name of a valid `EdgeConfig` of `configs`, in the device's
/// namespace. The server creates those that do not exist and leaves the others.
pub fn desired_executions(
    devices: &[EdgeDevice],
    configs: &[EdgeConfig],
) -> Vec<PlaybookExecution> {
    // Each config is checked once, not once per device.
    let valid: Vec<&EdgeConfig> = configs.iter().filter(|c| c.validate().is_empty()).collect();
    devices
        .iter()
        .filter(|device| device.metadata.deletion_timestamp.is_none())
        .filter_map(|device| {
            let device_name = device.metadata.name.as_deref()?;
            let wanted = labelled_config(device.metadata.labels.as_ref())?;
            let config = valid.iter().find(|c| {
                c.metadata.name.as_deref() == Some(wanted)
                    && c.metadata.namespace == device.metadata.namespace
            })?;
            execution_of_valid(device_name, config)
        })
        .collect()
}

/// The execution of `config` on `device`; `None` when the config is invalid or
/// the execution's name would not be a valid object name.
pub fn execution_for(device: &str, config: &EdgeConfig) -> Option<PlaybookExecution> {
    if !config.validate().is_empty() {
        return None;
    }
    execution_of_valid(device, config)
}

/// [`execution_for`] of a config already checked.
fn execution_of_valid(device: &str, config: &EdgeConfig) -> Option<PlaybookExecution> {
    let config_name = config.metadata.name.as_deref()?;
    let edge_playbook = config.spec.edge_playbook.as_ref()?;
    let mut playbook = edge_playbook.playbooks.first()?.clone();
    playbook.timeout_seconds = playbook.timeout_seconds.or(edge_playbook.timeout_seconds);
    let name = execution_name(device, config_name);
    crate::validation::dns1123_subdomain(&name).ok()?;
    let labels = BTreeMap::from([
        (DEVICE_LABEL.to_owned(), device.to_owned()),
        (EDGE_CONFIG_OWNER_LABEL.to_owned(), config_name.to_owned()),
    ]);
    // A label value is at most 63 characters: longer names go without the label.
    let labels = labels
        .into_iter()
        .filter(|(_, v)| crate::validation::label_value(v).is_ok())
        .collect();
    let mut execution = PlaybookExecution::new(
        name,
        PlaybookExecutionSpec {
            execution_attempt: edge_playbook.execution_attempts,
            playbook,
            extra: Default::default(),
        },
    );
    execution.metadata = ObjectMeta {
        name: execution.metadata.name.take(),
        namespace: config.metadata.namespace.clone(),
        labels: Some(labels),
        ..Default::default()
    };
    Some(execution)
}

/// Whether `execution` is run by `device`: its device label names it. A device's
/// reports about executions of others are ignored.
pub fn belongs_to(execution: &PlaybookExecution, device: &str) -> bool {
    execution
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(DEVICE_LABEL))
        .is_some_and(|d| d == device)
}

/// The device's labels once `execution` (reported finished by `device`) is done:
/// without the `EdgeConfig` label when it still names the execution's config, as
/// Flotta's operator does; `None` when nothing changes.
pub fn labels_after_final(
    labels: &BTreeMap<String, String>,
    execution: &PlaybookExecution,
) -> Option<BTreeMap<String, String>> {
    let config = execution
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(EDGE_CONFIG_OWNER_LABEL))?;
    if labels.get(EDGE_CONFIG_LABEL) != Some(config) {
        return None;
    }
    let mut labels = labels.clone();
    labels.remove(EDGE_CONFIG_LABEL);
    Some(labels)
}

/// The state of `execution`: the type of its `True` condition.
pub fn current_state(execution: &PlaybookExecution) -> Option<&str> {
    execution
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .rev()
        .find(|c| c.status == "True")
        .map(|c| c.type_.as_str())
}

/// The content hash of a playbook and its options, so that a device tells a
/// changed execution from one it ran.
pub fn playbook_revision(execution: &PlaybookExecution) -> String {
    let json = serde_json::to_vec(&execution.spec).unwrap_or_default();
    revision_of(&json)
}

/// The revision a device gives an execution that came without one (from a server
/// that sends none, as Flotta's): the hash of its playbook text.
pub fn text_revision(playbook: &str) -> String {
    revision_of(playbook.as_bytes())
}

fn revision_of(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a device labelled `labels` (named `device`) is sent for the `ansible`
/// directive, out of its namespace's `executions`: its execution when it exists,
/// is the device's and is not finished (none otherwise).
pub fn served_executions(
    device: &str,
    labels: Option<&BTreeMap<String, String>>,
    executions: &[PlaybookExecution],
) -> Vec<wire::PlaybookExecution> {
    let Some(config) = labelled_config(labels) else {
        return Vec::new();
    };
    let name = execution_name(device, config);
    executions
        .iter()
        .filter(|e| e.metadata.name.as_deref() == Some(name.as_str()))
        .filter(|e| belongs_to(e, device))
        .filter(|e| !current_state(e).is_some_and(is_final))
        .filter_map(to_wire)
        .collect()
}

/// An execution as the Edge API sends it: Flotta's `name` and
/// `ansible_playbook_string` (the decoded YAML), and beyond Flotta how to run it.
pub fn to_wire(execution: &PlaybookExecution) -> Option<wire::PlaybookExecution> {
    let playbook = &execution.spec.playbook;
    let text = decode_content(&playbook.content).ok()?;
    let escalation = playbook.privilege_escalation_options.as_ref();
    Some(wire::PlaybookExecution {
        name: execution.metadata.name.clone(),
        ansible_playbook_string: Some(text),
        last_data_upload: None,
        timeout_seconds: playbook.timeout_seconds,
        check: playbook.ansible_options.as_ref().and_then(|o| o.check),
        become_: escalation.and_then(|e| e.become_),
        become_method: escalation.and_then(|e| e.become_method.clone()),
        become_user: escalation.and_then(|e| e.become_user.clone()),
        attempts: Some(execution.spec.execution_attempt.unwrap_or(0).max(1)),
        revision: Some(playbook_revision(execution)),
        extra: Default::default(),
    })
}

/// The `ansible-manager` section of a device's configuration: present while the
/// device is labelled to run an `EdgeConfig`, so that idle devices never poll.
pub fn manager_configuration(
    labels: Option<&BTreeMap<String, String>>,
) -> Option<wire::AnsibleManagerConfiguration> {
    labelled_config(labels).map(|_| wire::AnsibleManagerConfiguration {
        period_seconds: Some(POLL_PERIOD_SECONDS),
        extra: Default::default(),
    })
}

/// Checks a device's report of an execution: a name and one of [`STATES`].
pub fn check_report(report: &wire::PlaybookExecutionStatus, at: &str) -> Result<(), String> {
    if report.name.as_deref().is_none_or(str::is_empty) {
        return Err(format!("{at}.name: required"));
    }
    match report.status.as_deref() {
        Some(state) if STATES.contains(&state) => Ok(()),
        Some(state) => Err(format!(
            "{at}.status: {state:?} is not one of {}",
            STATES.join(", ")
        )),
        None => Err(format!("{at}.status: required")),
    }
}

/// The execution's status after `report` (checked with [`check_report`]),
/// received at `now`: `None` when it says nothing new (same state and message).
/// A new state becomes the `True` condition (its reason the state, its message
/// the device's), the previous one turns `False`, as Flotta records them.
pub fn record_report(
    status: Option<&PlaybookExecutionStatus>,
    report: &wire::PlaybookExecutionStatus,
    now: &Time,
) -> Option<PlaybookExecutionStatus> {
    let state = report.status.as_deref()?;
    let mut conditions = status
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let current = conditions.iter().rev().find(|c| c.status == "True");
    if current.is_some_and(|c| c.type_ == state && c.message == report.message) {
        return None;
    }
    for condition in conditions.iter_mut().filter(|c| c.status == "True") {
        condition.status = "False".into();
    }
    conditions.push(StatusCondition {
        last_transition_time: Some(now.clone()),
        message: report.message.clone(),
        reason: Some(state.to_owned()),
        status: "True".into(),
        type_: state.to_owned(),
        extra: Default::default(),
    });
    let excess = conditions.len().saturating_sub(MAX_CONDITIONS);
    conditions.drain(..excess);
    Some(PlaybookExecutionStatus {
        conditions: Some(conditions),
        extra: status.map(|s| s.extra.clone()).unwrap_or_default(),
    })
}

/// The device's `status.PlaybookExec` after `reports` (each checked with
/// [`check_report`]): each reported execution's entry carries its conditions
/// as [`record_report`] makes them; entries of executions not reported are kept.
pub fn device_entries(
    current: Option<&[PlaybookExec]>,
    reports: &[wire::PlaybookExecutionStatus],
    now: &Time,
) -> Vec<PlaybookExec> {
    let mut entries: Vec<PlaybookExec> = current.map(<[_]>::to_vec).unwrap_or_default();
    for report in reports {
        let Some(name) = report.name.as_deref() else {
            continue;
        };
        let index = match entries.iter().position(|e| e.name == name) {
            Some(index) => index,
            None => {
                entries.push(PlaybookExec {
                    name: name.to_owned(),
                    ..Default::default()
                });
                entries.len() - 1
            }
        };
        let entry = &mut entries[index];
        if let Some(status) = record_report(entry.playbook_execution_status.as_ref(), report, now) {
            entry.playbook_execution_status = Some(status);
        }
    }
    entries
}

#[cfg(test)]
mod tests;
