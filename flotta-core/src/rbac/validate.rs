//! What RBAC objects and token subjects must look like. Every problem names its
//! field, in Kubernetes' path style (`rules[0].verbs[1]`, `roleRef.kind`).

use std::time::Duration;

use serde_json::{Map, Value};

use super::VERBS;
use super::builtin::{RESERVED_PREFIX, is_reserved};
use crate::kind::{RBAC_GROUP, ResourceKind};
use crate::validation::FieldError;

fn problem(path: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        path: path.into(),
        message: message.into(),
    }
}

/// Checks that `value[field]` is absent or a list of strings; returns them.
fn string_list<'a>(
    object: &'a Map<String, Value>,
    field: &str,
    path: &str,
    problems: &mut Vec<FieldError>,
) -> Vec<&'a str> {
    match object.get(field) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match item {
                Value::String(s) => Some(s.as_str()),
                other => {
                    problems.push(problem(
                        format!("{path}.{field}[{i}]"),
                        format!("must be a string, not {other}"),
                    ));
                    None
                }
            })
            .collect(),
        Some(other) => {
            problems.push(problem(
                format!("{path}.{field}"),
                format!("must be a list of strings, not {other}"),
            ));
            Vec::new()
        }
    }
}

fn unknown_fields(
    object: &Map<String, Value>,
    known: &[&str],
    path: &str,
    problems: &mut Vec<FieldError>,
) {
    for key in object.keys().filter(|k| !known.contains(&k.as_str())) {
        problems.push(problem(
            format!("{path}.{key}"),
            format!("unknown field; expected one of {}", known.join(", ")),
        ));
    }
}

fn check_rule(rule: &Value, path: &str, cluster: bool, problems: &mut Vec<FieldError>) {
    let Some(rule) = rule.as_object() else {
        problems.push(problem(path, "must be an object"));
        return;
    };
    unknown_fields(
        rule,
        &[
            "apiGroups",
            "resources",
            "resourceNames",
            "verbs",
            "nonResourceURLs",
        ],
        path,
        problems,
    );
    let verbs = string_list(rule, "verbs", path, problems);
    if verbs.is_empty() {
        problems.push(problem(
            format!("{path}.verbs"),
            "at least one verb is required",
        ));
    }
    for (i, verb) in verbs.iter().enumerate() {
        if *verb != "*" && !VERBS.contains(verb) {
            problems.push(problem(
                format!("{path}.verbs[{i}]"),
                format!(
                    "unknown verb {verb:?}; expected * or one of {}",
                    VERBS.join(", ")
                ),
            ));
        }
    }
    let groups = string_list(rule, "apiGroups", path, problems);
    let resources = string_list(rule, "resources", path, problems);
    let _names = string_list(rule, "resourceNames", path, problems);
    let urls = string_list(rule, "nonResourceURLs", path, problems);
    if !urls.is_empty() {
        if !cluster {
            problems.push(problem(
                format!("{path}.nonResourceURLs"),
                "only ClusterRoles may name non-resource URLs",
            ));
        }
        if !groups.is_empty() || !resources.is_empty() {
            problems.push(problem(
                format!("{path}.nonResourceURLs"),
                "a rule names either resources or non-resource URLs, not both",
            ));
        }
        for (i, url) in urls.iter().enumerate() {
            if !url.starts_with('/') && *url != "*" {
                problems.push(problem(
                    format!("{path}.nonResourceURLs[{i}]"),
                    format!("{url:?} must start with /"),
                ));
            }
        }
    } else {
        if groups.is_empty() {
            problems.push(problem(
                format!("{path}.apiGroups"),
                "a resource rule needs at least one API group (\"\" is the core group)",
            ));
        }
        if resources.is_empty() {
            problems.push(problem(
                format!("{path}.resources"),
                "a resource rule needs at least one resource",
            ));
        }
    }
}

fn check_role(object: &Map<String, Value>, cluster: bool, problems: &mut Vec<FieldError>) {
    if object.get("aggregationRule").is_some_and(|v| !v.is_null()) {
        problems.push(problem(
            "aggregationRule",
            "aggregated ClusterRoles are not supported; list the rules",
        ));
    }
    match object.get("rules") {
        None | Some(Value::Null) => {}
        Some(Value::Array(rules)) => {
            for (i, rule) in rules.iter().enumerate() {
                check_rule(rule, &format!("rules[{i}]"), cluster, problems);
            }
        }
        Some(other) => problems.push(problem("rules", format!("must be a list, not {other}"))),
    }
}

fn text<'a>(object: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    object.get(field).and_then(Value::as_str)
}

fn check_binding(object: &Map<String, Value>, cluster: bool, problems: &mut Vec<FieldError>) {
    match object.get("roleRef") {
        None | Some(Value::Null) => problems.push(problem("roleRef", "required")),
        Some(Value::Object(role_ref)) => {
            unknown_fields(role_ref, &["apiGroup", "kind", "name"], "roleRef", problems);
            // Empty means the RBAC group, as in Kubernetes.
            if !matches!(
                text(role_ref, "apiGroup"),
                None | Some("") | Some(RBAC_GROUP)
            ) {
                problems.push(problem(
                    "roleRef.apiGroup",
                    format!("must be {RBAC_GROUP:?}"),
                ));
            }
            let kinds: &[&str] = if cluster {
                &["ClusterRole"]
            } else {
                &["Role", "ClusterRole"]
            };
            match text(role_ref, "kind") {
                Some(kind) if kinds.contains(&kind) => {}
                _ => problems.push(problem(
                    "roleRef.kind",
                    format!("must be {}", kinds.join(" or ")),
                )),
            }
            if text(role_ref, "name").is_none_or(str::is_empty) {
                problems.push(problem("roleRef.name", "required"));
            }
        }
        Some(other) => problems.push(problem(
            "roleRef",
            format!("must be an object, not {other}"),
        )),
    }
    match object.get("subjects") {
        None | Some(Value::Null) => {}
        Some(Value::Array(subjects)) => {
            for (i, subject) in subjects.iter().enumerate() {
                let path = format!("subjects[{i}]");
                let Some(subject) = subject.as_object() else {
                    problems.push(problem(path, "must be an object"));
                    continue;
                };
                unknown_fields(
                    subject,
                    &["apiGroup", "kind", "name", "namespace"],
                    &path,
                    problems,
                );
                let kind = text(subject, "kind");
                match kind {
                    Some("User" | "Group") => {
                        if !matches!(
                            text(subject, "apiGroup"),
                            None | Some("") | Some(RBAC_GROUP)
                        ) {
                            problems.push(problem(
                                format!("{path}.apiGroup"),
                                format!("must be {RBAC_GROUP:?} for a User or Group"),
                            ));
                        }
                    }
                    Some("ServiceAccount") => {
                        if cluster && text(subject, "namespace").is_none_or(str::is_empty) {
                            problems.push(problem(
                                format!("{path}.namespace"),
                                "a ServiceAccount subject of a ClusterRoleBinding needs a namespace",
                            ));
                        }
                    }
                    _ => problems.push(problem(
                        format!("{path}.kind"),
                        "must be User, Group or ServiceAccount",
                    )),
                }
                if text(subject, "name").is_none_or(str::is_empty) {
                    problems.push(problem(format!("{path}.name"), "required"));
                }
            }
        }
        Some(other) => problems.push(problem("subjects", format!("must be a list, not {other}"))),
    }
}

/// The problems of an RBAC object's body (`kind` one of the RBAC kinds); empty
/// when it may be stored. Names with the built-in prefix `flotta:` are refused for
/// ClusterRoles and ClusterRoleBindings.
pub fn validate(kind: ResourceKind, body: &Value) -> Vec<FieldError> {
    let mut problems = Vec::new();
    let Some(object) = body.as_object() else {
        return vec![problem("", "must be an object")];
    };
    let top: &[&str] = match kind {
        ResourceKind::Role | ResourceKind::ClusterRole => {
            &["apiVersion", "kind", "metadata", "rules", "aggregationRule"]
        }
        _ => &["apiVersion", "kind", "metadata", "roleRef", "subjects"],
    };
    let mut extra: Vec<&String> = object
        .keys()
        .filter(|k| !top.contains(&k.as_str()))
        .collect();
    extra.sort();
    for key in extra {
        problems.push(problem(
            key.as_str(),
            format!("unknown field; expected one of {}", top.join(", ")),
        ));
    }
    match kind {
        ResourceKind::Role => check_role(object, false, &mut problems),
        ResourceKind::ClusterRole => check_role(object, true, &mut problems),
        ResourceKind::RoleBinding => check_binding(object, false, &mut problems),
        ResourceKind::ClusterRoleBinding => check_binding(object, true, &mut problems),
        _ => {}
    }
    if !kind.namespaced()
        && let Some(name) = body.pointer("/metadata/name").and_then(Value::as_str)
        && is_reserved(name)
    {
        problems.push(problem(
            "metadata.name",
            format!("names starting with {RESERVED_PREFIX:?} are reserved for built-in objects"),
        ));
    }
    problems
}

/// Checks a token's user name and groups: a name is required, and neither may use
/// the reserved prefixes `flotta:` (built-in roles, given by the token's role only)
/// or `system:`.
pub fn check_token_subject(name: &str, groups: &[String]) -> Result<(), FieldError> {
    let reserved = |s: &str| s.starts_with(RESERVED_PREFIX) || s.starts_with("system:");
    if name.trim().is_empty() || name.len() > 253 {
        return Err(problem("name", "a name of 1 to 253 characters is required"));
    }
    if reserved(name) {
        return Err(problem(
            "name",
            "names starting with flotta: or system: are reserved",
        ));
    }
    for (i, group) in groups.iter().enumerate() {
        if group.trim().is_empty() || group.len() > 253 {
            return Err(problem(
                format!("groups[{i}]"),
                "a group of 1 to 253 characters is required",
            ));
        }
        if reserved(group) {
            return Err(problem(
                format!("groups[{i}]"),
                "groups starting with flotta: or system: are reserved (use --role for the built-in roles)",
            ));
        }
    }
    Ok(())
}

/// Parses a token lifetime: a number and a unit, `s`, `m`, `h` or `d`, possibly
/// several (`30d`, `12h`, `1d12h`).
pub fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(format!("{text:?}: units are d, h, m and s")),
        };
        let value: u64 = digits
            .parse()
            .map_err(|_| format!("{text:?}: a unit without a number"))?;
        total = total.saturating_add(value.saturating_mul(unit));
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!("{text:?}: a number without a unit"));
    }
    if total == 0 {
        return Err(format!("{text:?}: a lifetime must be positive"));
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn paths(kind: ResourceKind, body: Value) -> Vec<String> {
        validate(kind, &body).into_iter().map(|p| p.path).collect()
    }

    #[test]
    fn rules_name_their_bad_fields() {
        assert_eq!(
            paths(
                ResourceKind::Role,
                json!({"rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "steal"]}]})
            ),
            ["rules[0].verbs[1]"]
        );
        assert_eq!(
            paths(
                ResourceKind::Role,
                json!({"rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]})
            ),
            ["rules[0].nonResourceURLs"]
        );
        assert_eq!(
            paths(
                ResourceKind::ClusterRole,
                json!({"rules": [{"verbs": ["get"]}], "metadata": {"name": "flotta:root"}})
            ),
            ["rules[0].apiGroups", "rules[0].resources", "metadata.name"]
        );
        assert!(
            paths(
                ResourceKind::ClusterRole,
                json!({"rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]})
            )
            .is_empty()
        );
    }

    #[test]
    fn bindings_need_a_role_ref() {
        assert_eq!(
            paths(ResourceKind::RoleBinding, json!({"subjects": []})),
            ["roleRef"]
        );
        assert_eq!(
            paths(
                ResourceKind::ClusterRoleBinding,
                json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "x"},
                       "subjects": [{"kind": "Robot", "name": "r"}, {"kind": "User"}]})
            ),
            ["roleRef.kind", "subjects[0].kind", "subjects[1].name"]
        );
    }

    #[test]
    fn token_subjects_and_lifetimes() {
        assert!(check_token_subject("alice", &["team-a".into()]).is_ok());
        assert_eq!(
            check_token_subject("", &[]).map_err(|e| e.path),
            Err("name".into())
        );
        assert_eq!(
            check_token_subject("alice", &["flotta:admins".into()]).map_err(|e| e.path),
            Err("groups[0]".into())
        );
        assert_eq!(parse_lifetime("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_lifetime("1h30m"), Ok(Duration::from_secs(5_400)));
        assert!(parse_lifetime("0s").is_err());
        assert!(parse_lifetime("3w").is_err());
    }
}
