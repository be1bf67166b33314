//! Validation of resources: every problem is reported, each as a [`FieldError`]
//! naming the field path and saying plainly what is wrong, e.g.
//! `spec.heartbeat.periodSeconds: must be at least 1, got 0`.
//!
//! The name, label key and label value checks follow Kubernetes' rules and are
//! public so other modules (selectors, the server) use the same ones. Workloads
//! also follow Flotta's admission rules: no probes, no resource limits, only
//! `hostPath` volumes, unique container names, host port 9100 reserved.

use std::collections::BTreeSet;
use std::fmt;

use crate::model::{
    API_VERSION, ConfigFile, EdgeDevice, EdgeDeviceSet, EdgeDeviceSignedRequest, EdgeDeviceSpec,
    EdgeWorkload, EnrolmentCondition, HardwareProfileConfiguration, HeartbeatConfiguration,
    IntOrString, LabelSelector, LogCollection, LogCollectionConfig, MetricsConfiguration,
    ObjectMeta, OsInformation, PodSpec, Resource, RolloutPolicy,
};

/// Longest DNS-1123 subdomain (object names).
pub const MAX_SUBDOMAIN_LEN: usize = 253;
/// Longest DNS-1123 label (namespaces, label name parts).
pub const MAX_LABEL_LEN: usize = 63;
/// Host port that workloads may not use: the device's node-exporter listens there.
pub const RESERVED_HOST_PORT: i32 = 9100;

/// One problem found in a resource.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldError {
    /// Path of the field, e.g. `spec.pod.spec.containers[0].livenessProbe`.
    pub path: String,
    /// What is wrong, in plain words.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Something that can check itself.
pub trait Validate {
    /// Every problem found; empty when valid.
    fn validate(&self) -> Vec<FieldError>;
}

/// Collects problems while walking a resource.
#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn check(&mut self, path: impl Into<String>, result: Result<(), String>) {
        if let Err(message) = result {
            self.push(path, message);
        }
    }

    fn at_least<T: PartialOrd + fmt::Display>(&mut self, path: &str, value: Option<T>, min: T) {
        if let Some(v) = value
            && v < min
        {
            self.push(path, format!("must be at least {min}, got {v}"));
        }
    }

    fn one_of(&mut self, path: &str, value: Option<&str>, allowed: &[&str]) {
        if let Some(v) = value
            && !allowed.contains(&v)
        {
            self.push(
                path,
                format!("must be one of {}, got {v:?}", allowed.join(", ")),
            );
        }
    }
}

fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_LABEL_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Checks a DNS-1123 label (namespaces): at most 63 characters, lowercase
/// alphanumerics and `-`, starting and ending alphanumeric.
pub fn dns1123_label(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > MAX_LABEL_LEN {
        return Err(format!(
            "must be at most {MAX_LABEL_LEN} characters, got {}",
            value.len()
        ));
    }
    if !is_dns_label(value) {
        return Err(format!(
            "must consist of lowercase letters, digits and '-', and start and end with a letter or digit, got {value:?}"
        ));
    }
    Ok(())
}

/// Checks a DNS-1123 subdomain (object names): at most 253 characters, dot-separated
/// DNS labels.
pub fn dns1123_subdomain(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > MAX_SUBDOMAIN_LEN {
        return Err(format!(
            "must be at most {MAX_SUBDOMAIN_LEN} characters, got {}",
            value.len()
        ));
    }
    if !value.split('.').all(is_dns_label) {
        return Err(format!(
            "must consist of lowercase letters, digits, '-' and '.', and start and end with a letter or digit, got {value:?}"
        ));
    }
    Ok(())
}

/// Checks a label (or annotation) key: an optional DNS-1123 subdomain prefix and
/// `/`, then a name of at most 63 characters made of alphanumerics, `-`, `_`, `.`,
/// starting and ending alphanumeric. The rules are the selector module's, so a key
/// accepted here is one a selector can name.
pub fn label_key(key: &str) -> Result<(), String> {
    crate::selector::validate_label_key(key).map_err(|e| e.to_string())
}

/// Checks a label value: empty, or at most 63 characters made of alphanumerics,
/// `-`, `_`, `.`, starting and ending alphanumeric.
pub fn label_value(value: &str) -> Result<(), String> {
    crate::selector::validate_label_value(value).map_err(|e| e.to_string())
}

/// Longest config-file overlay path accepted, in bytes (Linux `PATH_MAX`).
pub const MAX_OVERLAY_PATH_BYTES: usize = 4096;

/// Checks a config-file overlay path (`spec.files[].path`) and returns its
/// components, to be joined one by one under the agent's root.
///
/// The path must be absolute and name a file: no `..` or `.` component, no empty
/// component (`//`, trailing `/`), no NUL byte, no component longer than 255 bytes,
/// at most [`MAX_OVERLAY_PATH_BYTES`]. Such a path cannot leave the root lexically;
/// symbolic links already on the device are the writer's part: it must create each
/// component without following links (see `docs/security.md`).
///
/// ```
/// use flotta_core::validation::overlay_path;
/// assert_eq!(overlay_path("/etc/app/app.conf"), Ok(vec!["etc", "app", "app.conf"]));
/// assert!(overlay_path("/etc/../../root/.ssh/authorized_keys").is_err());
/// assert!(overlay_path("etc/app.conf").is_err());
/// ```
pub fn overlay_path(path: &str) -> Result<Vec<&str>, String> {
    let Some(relative) = path.strip_prefix('/') else {
        return Err(format!("must be an absolute path, got {path:?}"));
    };
    if path.len() > MAX_OVERLAY_PATH_BYTES {
        return Err(format!(
            "must be at most {MAX_OVERLAY_PATH_BYTES} bytes, got {}",
            path.len()
        ));
    }
    if path.contains('\0') {
        return Err("must not contain a NUL byte".to_owned());
    }
    let components: Vec<&str> = relative.split('/').collect();
    for component in &components {
        match *component {
            "" => {
                return Err(format!(
                    "must name a file without empty components, got {path:?}"
                ));
            }
            "." | ".." => {
                return Err(format!(
                    "must not contain {component:?} components, got {path:?}"
                ));
            }
            c if c.len() > 255 => {
                return Err(format!("has a component longer than 255 bytes: {path:?}"));
            }
            _ => {}
        }
    }
    Ok(components)
}

/// Checks the parameters of a device-template string: every `{{ ... }}` must be
/// one of `.metadata.name`, `.metadata.labels.KEY` or
/// `getOrDefault .metadata.labels "KEY" "DEFAULT"`, with a valid label key.
pub fn template_parameters(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "has a '{{' without a closing '}}'".to_owned())?;
        let expression = after[..end].trim();
        check_template_expression(expression)?;
        rest = &after[end + 2..];
    }
    if rest.contains("}}") {
        return Err("has a '}}' without an opening '{{'".into());
    }
    Ok(())
}

fn check_template_expression(expression: &str) -> Result<(), String> {
    if expression == ".metadata.name" {
        return Ok(());
    }
    if let Some(key) = expression.strip_prefix(".metadata.labels.") {
        return label_key(key).map_err(|m| format!("parameter {{{{ {expression} }}}}: {m}"));
    }
    if let Some(args) = expression.strip_prefix("getOrDefault ") {
        let args = args.trim_start();
        if let Some(quoted) = args.strip_prefix(".metadata.labels ") {
            let parts: Vec<&str> = quoted.trim().splitn(2, ' ').collect();
            if let [key, default] = parts.as_slice() {
                let key = key.strip_prefix('"').and_then(|k| k.strip_suffix('"'));
                let default = default.trim();
                let quoted_default =
                    default.len() >= 2 && default.starts_with('"') && default.ends_with('"');
                if let (Some(key), true) = (key, quoted_default) {
                    return label_key(key)
                        .map_err(|m| format!("parameter {{{{ {expression} }}}}: {m}"));
                }
            }
        }
        return Err(format!(
            "parameter {{{{ {expression} }}}} must read getOrDefault .metadata.labels \"KEY\" \"DEFAULT\""
        ));
    }
    Err(format!(
        "unknown parameter {{{{ {expression} }}}}; use .metadata.name, .metadata.labels.KEY or getOrDefault .metadata.labels \"KEY\" \"DEFAULT\""
    ))
}

/// One problem per field of `extra` (fields the model does not know), at
/// `at.<field>`, saying `unknown field` and then `hint`.
pub(crate) fn unknown_fields(
    problems: &mut Vec<FieldError>,
    at: &str,
    extra: &crate::model::UnknownFields,
    hint: &str,
) {
    for key in extra.keys() {
        problems.push(FieldError {
            path: format!("{at}.{key}"),
            message: format!("unknown field{hint}"),
        });
    }
}

/// The problems of an object's `apiVersion`, `kind` and `metadata`, for kinds
/// validated outside this module (the GitOps kinds of [`crate::gitops`], the
/// Ansible kinds of [`crate::ansible`]).
pub(crate) fn type_and_metadata_problems(
    api_version: &str,
    kind: &str,
    expected_kind: &str,
    metadata: &ObjectMeta,
) -> Vec<FieldError> {
    let mut problems = Problems::default();
    check_type_meta(&mut problems, api_version, kind, expected_kind);
    check_metadata(&mut problems, metadata);
    problems.0
}

fn check_type_meta(problems: &mut Problems, api_version: &str, kind: &str, expected_kind: &str) {
    if api_version != API_VERSION {
        problems.push(
            "apiVersion",
            format!("must be {API_VERSION:?}, got {api_version:?}"),
        );
    }
    if kind != expected_kind {
        problems.push("kind", format!("must be {expected_kind:?}, got {kind:?}"));
    }
}

fn check_metadata(problems: &mut Problems, metadata: &ObjectMeta) {
    match metadata.name.as_deref() {
        Some(name) => problems.check("metadata.name", dns1123_subdomain(name)),
        None if metadata.generate_name.is_some() => {}
        None => problems.push("metadata.name", "is required"),
    }
    if let Some(namespace) = metadata.namespace.as_deref() {
        problems.check("metadata.namespace", dns1123_label(namespace));
    }
    for (key, value) in metadata.labels.iter().flatten() {
        problems.check(format!("metadata.labels[{key:?}]"), label_key(key));
        problems.check(format!("metadata.labels[{key:?}]"), label_value(value));
    }
    for key in metadata.annotations.iter().flatten().map(|(k, _)| k) {
        problems.check(format!("metadata.annotations[{key:?}]"), label_key(key));
    }
}

/// Checks a label selector's keys, operators and values. An empty selector is
/// valid (it selects everything).
fn check_selector(problems: &mut Problems, path: &str, selector: &LabelSelector) {
    for (key, value) in selector.match_labels.iter().flatten() {
        let at = format!("{path}.matchLabels[{key:?}]");
        problems.check(at.clone(), label_key(key));
        problems.check(at, label_value(value));
    }
    for (i, requirement) in selector.match_expressions.iter().flatten().enumerate() {
        let at = format!("{path}.matchExpressions[{i}]");
        problems.check(format!("{at}.key"), label_key(&requirement.key));
        let values = requirement.values.as_deref().unwrap_or_default();
        match requirement.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    problems.push(
                        format!("{at}.values"),
                        format!("must not be empty for operator {}", requirement.operator),
                    );
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    problems.push(
                        format!("{at}.values"),
                        format!("must be empty for operator {}", requirement.operator),
                    );
                }
            }
            other => problems.push(
                format!("{at}.operator"),
                format!("must be one of In, NotIn, Exists, DoesNotExist, got {other:?}"),
            ),
        }
        for (j, value) in values.iter().enumerate() {
            problems.check(format!("{at}.values[{j}]"), label_value(value));
        }
    }
}

fn check_heartbeat(problems: &mut Problems, path: &str, heartbeat: &HeartbeatConfiguration) {
    problems.at_least(
        &format!("{path}.periodSeconds"),
        heartbeat.period_seconds,
        1,
    );
    // The bounds follow the period the device gets (its own, else the default; a
    // set's period can only be judged with the device, so a device-level value is
    // checked against the default when it names none).
    let period = heartbeat
        .period_seconds
        .filter(|p| *p >= 1)
        .unwrap_or(crate::reconcile::DEFAULT_HEARTBEAT_PERIOD_SECONDS);
    if let Some(wait) = heartbeat.long_poll_seconds {
        let longest = crate::reconcile::longest_long_poll_seconds(period);
        if !(1..=longest).contains(&wait) {
            problems.push(
                format!("{path}.longPollSeconds"),
                format!(
                    "must be between 1 and {longest} (2.5 heartbeat periods of {period} s, at \
                     most {}), got {wait}: a longer poll would leave the device judged offline \
                     between two polls",
                    crate::reconcile::MAX_LONG_POLL_SECONDS
                ),
            );
        }
    }
    if let Some(silence) = heartbeat.max_silence_seconds
        && silence < period
    {
        problems.push(
            format!("{path}.maxSilenceSeconds"),
            format!("must be at least the heartbeat period ({period} s), got {silence}"),
        );
    }
    if let Some(profile) = &heartbeat.hardware_profile {
        problems.one_of(
            &format!("{path}.hardwareProfile.scope"),
            profile.scope.as_deref(),
            HardwareProfileConfiguration::SCOPES,
        );
    }
}

fn check_log_collection(problems: &mut Problems, path: &str, logs: &LogCollection) {
    for (name, config) in logs {
        let at = format!("{path}[{name:?}]");
        problems.at_least(&format!("{at}.bufferSize"), config.buffer_size, 1);
        problems.one_of(
            &format!("{at}.kind"),
            config.kind.as_deref(),
            LogCollectionConfig::KINDS,
        );
    }
}

fn check_metrics(problems: &mut Problems, path: &str, metrics: &MetricsConfiguration) {
    for (name, component) in [
        ("system", &metrics.system),
        ("dataTransfer", &metrics.data_transfer),
    ] {
        if let Some(component) = component {
            problems.at_least(&format!("{path}.{name}.interval"), component.interval, 0);
        }
    }
    if let Some(retention) = &metrics.retention {
        problems.at_least(
            &format!("{path}.retention.maxHours"),
            retention.max_hours,
            0,
        );
        problems.at_least(&format!("{path}.retention.maxMiB"), retention.max_mib, 0);
    }
}

fn check_update_policy(problems: &mut Problems, path: &str, policy: &crate::model::UpdatePolicy) {
    for (name, schedule) in [
        ("downloadSchedule", &policy.download_schedule),
        ("updateSchedule", &policy.update_schedule),
    ] {
        if let Some(schedule) = schedule
            && let Err(error) = crate::schedule::Schedule::parse(
                &schedule.at,
                schedule.time_zone.as_deref(),
                &schedule.start_grace_duration,
            )
        {
            problems.push(format!("{path}.{name}"), error.to_string());
        }
    }
}

fn check_os(problems: &mut Problems, path: &str, os: &OsInformation) {
    problems.at_least(
        &format!("{path}.rollbackAfterSeconds"),
        os.rollback_after_seconds,
        1,
    );
    if os.commit_id.is_some() && os.image.is_some() {
        problems.push(
            format!("{path}.image"),
            "must not be set together with commitID: a device runs either an OSTree commit or an OS image",
        );
    }
    if let Some(url) = &os.hosted_objects_url {
        if let Err(message) = hosted_objects_url(url) {
            problems.push(format!("{path}.hostedObjectsURL"), message);
        } else if os.image.is_some() {
            problems.push(
                format!("{path}.hostedObjectsURL"),
                "serves OSTree commits: it cannot be used with image",
            );
        }
    }
}

/// An OSTree repository URL devices pull commits from: `http://` or `https://`
/// with a host, no whitespace or control characters (it is written into the
/// device's OSTree remote configuration).
pub fn hosted_objects_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{url:?} names no host"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?} contains whitespace or control characters"));
    }
    Ok(())
}

fn is_base64(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    s.len().is_multiple_of(4)
        && s.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn check_files(problems: &mut Problems, path: &str, files: &[ConfigFile]) {
    let mut seen = BTreeSet::new();
    for (i, file) in files.iter().enumerate() {
        let at = format!("{path}[{i}]");
        if let Err(message) = overlay_path(&file.path) {
            problems.push(format!("{at}.path"), message);
        } else if !seen.insert(file.path.as_str()) {
            problems.push(
                format!("{at}.path"),
                format!("{:?} is listed more than once", file.path),
            );
        }
        if file.encoding == Some(crate::model::FileEncoding::Base64) && !is_base64(&file.content) {
            problems.push(format!("{at}.content"), "is not valid base64");
        }
        if let Some(mode) = &file.mode {
            let octal =
                (3..=4).contains(&mode.len()) && mode.bytes().all(|b| (b'0'..=b'7').contains(&b));
            if !octal {
                problems.push(
                    format!("{at}.mode"),
                    format!("must be 3 or 4 octal digits such as \"0644\", got {mode:?}"),
                );
            }
        }
        if let Some(owner) = &file.owner {
            let valid = owner.split(':').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            }) && owner.matches(':').count() <= 1;
            if !valid {
                problems.push(
                    format!("{at}.owner"),
                    format!("must be \"user\" or \"user:group\", got {owner:?}"),
                );
            }
        }
    }
}

fn check_device_spec(problems: &mut Problems, path: &str, spec: &EdgeDeviceSpec) {
    if let Some(h) = &spec.heartbeat {
        check_heartbeat(problems, &format!("{path}.heartbeat"), h);
    }
    if let Some(l) = &spec.log_collection {
        check_log_collection(problems, &format!("{path}.logCollection"), l);
    }
    if let Some(m) = &spec.metrics {
        check_metrics(problems, &format!("{path}.metrics"), m);
    }
    if let Some(o) = &spec.os_information {
        check_os(problems, &format!("{path}.osInformation"), o);
    }
    if let Some(u) = &spec.update_policy {
        check_update_policy(problems, &format!("{path}.updatePolicy"), u);
    }
    if let Some(f) = &spec.files {
        check_files(problems, &format!("{path}.files"), f);
    }
}

impl Validate for EdgeDevice {
    fn validate(&self) -> Vec<FieldError> {
        let mut problems = Problems::default();
        check_type_meta(&mut problems, &self.api_version, &self.kind, Self::KIND);
        check_metadata(&mut problems, &self.metadata);
        check_device_spec(&mut problems, "spec", &self.spec);
        problems.0
    }
}

impl Validate for EdgeDeviceSet {
    fn validate(&self) -> Vec<FieldError> {
        let mut problems = Problems::default();
        check_type_meta(&mut problems, &self.api_version, &self.kind, Self::KIND);
        check_metadata(&mut problems, &self.metadata);
        let spec = &self.spec;
        if let Some(h) = &spec.heartbeat {
            check_heartbeat(&mut problems, "spec.heartbeat", h);
        }
        if let Some(l) = &spec.log_collection {
            check_log_collection(&mut problems, "spec.logCollection", l);
        }
        if let Some(m) = &spec.metrics {
            check_metrics(&mut problems, "spec.metrics", m);
        }
        if let Some(o) = &spec.os_information {
            check_os(&mut problems, "spec.osInformation", o);
        }
        if let Some(u) = &spec.update_policy {
            check_update_policy(&mut problems, "spec.updatePolicy", u);
        }
        if let Some(f) = &spec.files {
            check_files(&mut problems, "spec.files", f);
        }
        if let Some(selector) = &spec.selector {
            check_selector(&mut problems, "spec.selector", selector);
        }
        if let Some(rollout) = &spec.rollout_policy {
            check_rollout(&mut problems, "spec.rolloutPolicy", rollout);
        }
        if let Some(template) = &spec.template {
            if let Some(metadata) = &template.metadata {
                for (key, value) in metadata.labels.iter().flatten() {
                    let at = format!("spec.template.metadata.labels[{key:?}]");
                    problems.check(at.clone(), label_key(key));
                    // A templated value is checked once rendered; here only its syntax.
                    if value.contains("{{") {
                        problems.check(at, template_parameters(value));
                    } else {
                        problems.check(at, label_value(value));
                    }
                }
                for (key, value) in metadata.annotations.iter().flatten() {
                    let at = format!("spec.template.metadata.annotations[{key:?}]");
                    problems.check(at.clone(), label_key(key));
                    problems.check(at, template_parameters(value));
                }
            }
            if let Some(spec) = &template.spec {
                check_device_spec(&mut problems, "spec.template.spec", spec);
                if let Ok(value) = serde_json::to_value(spec) {
                    check_template_strings(&mut problems, "spec.template.spec", &value);
                }
            }
        }
        problems.0
    }
}

/// Checks the parameter syntax of every string inside a template.
fn check_template_strings(problems: &mut Problems, path: &str, value: &serde_json::Value) {
    match value {
        serde_json::Value::String(text) => problems.check(path, template_parameters(text)),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_template_strings(problems, &format!("{path}[{i}]"), item);
            }
        }
        serde_json::Value::Object(map) => {
            for (key, item) in map {
                check_template_strings(problems, &format!("{path}.{key}"), item);
            }
        }
        _ => {}
    }
}

fn check_int_or_percent(
    problems: &mut Problems,
    path: &str,
    value: &IntOrString,
    min_count: i32,
    min_percent: u32,
) {
    match value {
        IntOrString::Int(n) => problems.at_least(path, Some(*n), min_count),
        IntOrString::String(s) => match s.strip_suffix('%').map(str::parse::<u32>) {
            Some(Ok(p)) if (min_percent..=100).contains(&p) => {}
            _ => problems.push(
                path,
                format!("must be a count or a percentage from {min_percent}% to 100%, got {s:?}"),
            ),
        },
    }
}

fn check_rollout(problems: &mut Problems, path: &str, rollout: &RolloutPolicy) {
    for (i, batch) in rollout.batches.iter().flatten().enumerate() {
        let at = format!("{path}.batches[{i}]");
        if let Some(selector) = &batch.selector {
            check_selector(problems, &format!("{at}.selector"), selector);
        }
        if let Some(limit) = &batch.limit {
            check_int_or_percent(problems, &format!("{at}.limit"), limit, 1, 1);
        }
        // The server enforces every field it accepts: one it does not know is refused.
        for key in batch.extra.keys() {
            problems.push(
                format!("{at}.{key}"),
                "unknown field: a batch has selector and limit",
            );
        }
    }
    if let Some(max) = &rollout.max_unavailable {
        // Zero would let no running device ever be updated: the rollout could never end.
        check_int_or_percent(problems, &format!("{path}.maxUnavailable"), max, 1, 1);
    }
    if let Some(deadline) = rollout.progress_deadline_seconds {
        problems.at_least(
            &format!("{path}.progressDeadlineSeconds"),
            Some(deadline),
            1,
        );
    }
    for key in rollout.extra.keys() {
        problems.push(
            format!("{path}.{key}"),
            "unknown field: a rollout policy has batches, maxUnavailable, successThreshold, \
             manualApproval and progressDeadlineSeconds",
        );
    }
    match &rollout.success_threshold {
        Some(IntOrString::String(s)) => {
            check_int_or_percent(
                problems,
                &format!("{path}.successThreshold"),
                &IntOrString::String(s.clone()),
                0,
                0,
            );
        }
        Some(IntOrString::Int(n)) => problems.push(
            format!("{path}.successThreshold"),
            format!("must be a percentage such as \"90%\", got {n}"),
        ),
        None => {}
    }
}

/// Flotta's admission rules for the pod of a workload.
fn check_pod(problems: &mut Problems, path: &str, pod: &PodSpec) {
    if pod.containers.is_empty() {
        problems.push(
            format!("{path}.containers"),
            "must list at least one container",
        );
    }
    let mut names = BTreeSet::new();
    let all = pod
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| (format!("{path}.initContainers[{i}]"), c))
        .chain(
            pod.containers
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("{path}.containers[{i}]"), c)),
        );
    for (at, container) in all {
        if container.name.is_empty() {
            problems.push(format!("{at}.name"), "is required");
        } else {
            problems.check(format!("{at}.name"), dns1123_label(&container.name));
            if !names.insert(container.name.as_str()) {
                problems.push(
                    format!("{at}.name"),
                    format!("container name {:?} is used more than once", container.name),
                );
            }
        }
        for (field, present) in [
            ("livenessProbe", container.liveness_probe.is_some()),
            ("readinessProbe", container.readiness_probe.is_some()),
            ("startupProbe", container.startup_probe.is_some()),
        ] {
            if present {
                problems.push(
                    format!("{at}.{field}"),
                    "probes are not supported on edge devices",
                );
            }
        }
        if container
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .is_some_and(|l| !l.is_empty())
        {
            problems.push(
                format!("{at}.resources.limits"),
                "resource limits are not supported on edge devices",
            );
        }
        for (i, port) in container.ports.iter().flatten().enumerate() {
            if port.host_port == Some(RESERVED_HOST_PORT) {
                problems.push(
                    format!("{at}.ports[{i}].hostPort"),
                    format!("{RESERVED_HOST_PORT} is reserved for the device's metrics exporter"),
                );
            }
        }
    }
    for (i, volume) in pod.volumes.iter().flatten().enumerate() {
        let mut as_json = serde_json::to_value(volume).unwrap_or_default();
        let sources: Vec<String> = as_json
            .as_object_mut()
            .map(|o| o.keys().filter(|k| *k != "name").cloned().collect())
            .unwrap_or_default();
        // configMap and secret volumes carry the workload's objects to the device
        // (issue 22); every other source needs a cluster.
        if volume.host_path.is_none() && volume.config_map.is_none() && volume.secret.is_none() {
            problems.push(
                format!("{path}.volumes[{i}]"),
                format!(
                    "only hostPath, configMap and secret volumes are supported on edge devices, got {}",
                    if sources.is_empty() {
                        "no source".to_owned()
                    } else {
                        sources.join(", ")
                    }
                ),
            );
        }
    }
}

impl Validate for EdgeWorkload {
    fn validate(&self) -> Vec<FieldError> {
        let mut problems = Problems::default();
        check_type_meta(&mut problems, &self.api_version, &self.kind, Self::KIND);
        check_metadata(&mut problems, &self.metadata);
        let spec = &self.spec;
        problems.one_of(
            "spec.type",
            Some(spec.type_.as_str()),
            crate::model::EdgeWorkloadSpec::TYPES,
        );
        if let Some(device) = &spec.device {
            problems.check("spec.device", dns1123_subdomain(device));
        }
        if let Some(selector) = &spec.device_selector {
            check_selector(&mut problems, "spec.deviceSelector", selector);
        }
        if let Some(metrics) = &spec.metrics {
            for (path, port) in std::iter::once(("spec.metrics.port".to_owned(), metrics.port))
                .chain(
                    metrics.containers.iter().flatten().map(|(name, c)| {
                        (format!("spec.metrics.containers[{name:?}].port"), c.port)
                    }),
                )
            {
                if let Some(port) = port
                    && !(1..=65535).contains(&port)
                {
                    problems.push(path, format!("must be a port from 1 to 65535, got {port}"));
                }
            }
            problems.at_least("spec.metrics.interval", metrics.interval, 1);
        }
        check_pod(&mut problems, "spec.pod.spec", &spec.pod.spec);
        if let Some(rollout) = &spec.rollout_policy {
            check_rollout(&mut problems, "spec.rolloutPolicy", rollout);
        }
        problems.0
    }
}

impl Validate for EdgeDeviceSignedRequest {
    fn validate(&self) -> Vec<FieldError> {
        let mut problems = Problems::default();
        check_type_meta(&mut problems, &self.api_version, &self.kind, Self::KIND);
        check_metadata(&mut problems, &self.metadata);
        problems.check(
            "spec.targetNamespace",
            dns1123_label(&self.spec.target_namespace),
        );
        if let Some(set) = &self.spec.target_set {
            problems.check("spec.targetSet", dns1123_subdomain(set));
        }
        for (i, condition) in self
            .status
            .iter()
            .flat_map(|s| s.conditions.iter())
            .enumerate()
        {
            let at = format!("status.conditions[{i}]");
            problems.one_of(
                &format!("{at}.type"),
                Some(condition.type_.as_str()),
                EnrolmentCondition::TYPES,
            );
            problems.one_of(
                &format!("{at}.status"),
                Some(condition.status.as_str()),
                &["True", "False", "Unknown"],
            );
        }
        problems.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_paths_cannot_leave_their_root() {
        assert_eq!(overlay_path("/a"), Ok(vec!["a"]));
        assert_eq!(overlay_path("/etc/x.d/y"), Ok(vec!["etc", "x.d", "y"]));
        for escaping in [
            "../etc/passwd",
            "/../etc/passwd",
            "/etc/../../x",
            "/etc/..",
            "/./etc",
            "/etc//passwd",
            "/etc/",
            "/",
            "",
            "relative",
            "/a\0b",
        ] {
            assert!(overlay_path(escaping).is_err(), "{escaping:?} accepted");
        }
        let long = format!("/{}", "a".repeat(256));
        assert!(overlay_path(&long).is_err());
        let too_long = "/a".repeat(MAX_OVERLAY_PATH_BYTES);
        assert!(overlay_path(&too_long).is_err());
    }

    #[test]
    fn rollout_policies_the_server_cannot_honour_are_refused() {
        let workload: crate::model::EdgeWorkload = serde_json::from_value(serde_json::json!({
            "apiVersion": "management.project-flotta.io/v1alpha1",
            "kind": "EdgeWorkload",
            "metadata": {"name": "w"},
            "spec": {
                "type": "pod",
                "device": "d",
                "pod": {"spec": {"containers": [{"name": "c", "image": "i"}]}},
                "rolloutPolicy": {
                    "maxUnavailable": 0,
                    "progressDeadlineSeconds": 0,
                    "canary": true,
                    "batches": [{"limit": 1, "pauseAfter": true}],
                },
            },
        }))
        .expect("parses");
        let paths: Vec<String> = workload.validate().into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            [
                "spec.rolloutPolicy.batches[0].pauseAfter",
                "spec.rolloutPolicy.maxUnavailable",
                "spec.rolloutPolicy.progressDeadlineSeconds",
                "spec.rolloutPolicy.canary",
            ]
        );
        let set: crate::model::EdgeDeviceSet = serde_json::from_value(serde_json::json!({
            "apiVersion": "management.project-flotta.io/v1alpha1",
            "kind": "EdgeDeviceSet",
            "metadata": {"name": "s"},
            "spec": {"rolloutPolicy": {"maxUnavailable": "150%"}},
        }))
        .expect("parses");
        let paths: Vec<String> = set.validate().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["spec.rolloutPolicy.maxUnavailable"]);
    }

    #[test]
    fn hosted_objects_urls_are_http_urls_without_line_breaks() {
        assert!(hosted_objects_url("https://os.example.com/repo").is_ok());
        assert!(hosted_objects_url("http://10.0.0.1:8080").is_ok());
        for bad in [
            "ftp://os.example.com/repo",
            "https://",
            "https:///repo",
            "https://os.example.com/repo\n[remote \"evil\"]",
            "os.example.com",
        ] {
            let bad = bad.replace("\\n", "\n");
            assert!(hosted_objects_url(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn subdomain_rules() {
        assert!(dns1123_subdomain("242e48d0-286b-4170-9b97-95502066e6ae").is_ok());
        assert!(dns1123_subdomain("a.b-c.d").is_ok());
        assert!(dns1123_subdomain("").is_err());
        assert!(dns1123_subdomain("Upper").is_err());
        assert!(dns1123_subdomain("-dash").is_err());
        assert!(dns1123_subdomain("a..b").is_err());
        assert!(dns1123_subdomain(&"a".repeat(254)).is_err());
        assert!(dns1123_subdomain(&"a".repeat(63)).is_ok());
        assert!(dns1123_label(&"a".repeat(64)).is_err());
        assert!(dns1123_label("a.b").is_err());
    }

    #[test]
    fn label_key_rules() {
        assert!(label_key("app").is_ok());
        assert!(label_key("flotta/member-of").is_ok());
        assert!(label_key("example.com/My_Key.v1").is_ok());
        assert!(label_key("").is_err());
        assert!(label_key("/name").is_err());
        assert!(label_key("prefix/").is_err());
        assert!(label_key("Bad_Prefix/name").is_err());
        assert!(label_key("a/b/c").is_err());
        assert!(label_key(&"k".repeat(64)).is_err());
        assert!(label_key(&format!("{}/k", "p".repeat(254))).is_err());
        assert!(label_key("_starts").is_err());
    }

    #[test]
    fn label_value_rules() {
        assert!(label_value("").is_ok());
        assert!(label_value("v1.2_beta-3").is_ok());
        assert!(label_value(&"v".repeat(63)).is_ok());
        assert!(label_value(&"v".repeat(64)).is_err());
        assert!(label_value("has space").is_err());
        assert!(label_value("-start").is_err());
        assert!(label_value("end.").is_err());
    }

    #[test]
    fn template_parameter_rules() {
        assert!(template_parameters("plain").is_ok());
        assert!(template_parameters("dev-{{ .metadata.name }}").is_ok());
        assert!(template_parameters("{{.metadata.labels.site}}-x").is_ok());
        assert!(
            template_parameters(r#"{{ getOrDefault .metadata.labels "zone" "eu-1" }}"#).is_ok()
        );
        assert!(template_parameters("{{ .metadata.uid }}").is_err());
        assert!(template_parameters("{{ .metadata.name ").is_err());
        assert!(template_parameters("x }}").is_err());
        assert!(template_parameters("{{ .metadata.labels.Bad Key }}").is_err());
        assert!(template_parameters(r#"{{ getOrDefault .metadata.labels zone }}"#).is_err());
    }

    #[test]
    fn heartbeat_period_message_is_plain() {
        let mut device = EdgeDevice::new("dev-1", EdgeDeviceSpec::default());
        device.spec.heartbeat = Some(HeartbeatConfiguration {
            period_seconds: Some(0),
            ..Default::default()
        });
        let errors = device.validate();
        assert_eq!(
            errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["spec.heartbeat.periodSeconds: must be at least 1, got 0"]
        );
    }

    #[test]
    fn update_schedules_must_parse_and_use_a_supported_zone() {
        let mut device = EdgeDevice::new("dev-1", EdgeDeviceSpec::default());
        let schedule = |at: &str, zone: Option<&str>, grace: &str| crate::model::UpdateSchedule {
            at: at.into(),
            time_zone: zone.map(str::to_owned),
            start_grace_duration: grace.into(),
            ..Default::default()
        };
        device.spec.update_policy = Some(crate::model::UpdatePolicy {
            download_schedule: Some(schedule("* * * * *", None, "1h")),
            update_schedule: Some(schedule("0 2 * * 1-5", Some("UTC"), "2h")),
            ..Default::default()
        });
        assert!(device.validate().is_empty(), "{:?}", device.validate());
        device.spec.update_policy = Some(crate::model::UpdatePolicy {
            download_schedule: Some(schedule("0 25 * * *", None, "1h")),
            update_schedule: Some(schedule("0 2 * * *", Some("America/Atlantis"), "2h")),
            ..Default::default()
        });
        let errors: Vec<String> = device.validate().iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("spec.updatePolicy.downloadSchedule: cron expression"),
            "{errors:?}"
        );
        assert!(errors[0].contains("hour: \"25\""), "{errors:?}");
        assert!(
            errors[1].starts_with(
                "spec.updatePolicy.updateSchedule: time zone \"America/Atlantis\" is not known here"
            ),
            "{errors:?}"
        );
    }
}
