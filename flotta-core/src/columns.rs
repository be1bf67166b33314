//! The table columns of each kind: what `flotta get` prints and what the server
//! answers to kubectl's `Accept: application/json;as=Table;g=meta.k8s.io;v=v1`.
//! One list per kind, reached from the kind table's key as
//! [`ResourceKind::columns`]; both the command line and the server read it.
//!
//! A cell is a pure function of the object and of the time `now` the caller passes
//! (ages are relative to it), so this module stays free of clocks.
//!
//! ```
//! use flotta_core::kind::ResourceKind;
//! use serde_json::json;
//!
//! let columns = ResourceKind::EdgeWorkload.columns();
//! assert_eq!(columns[0].header, "NAME");
//! let workload = json!({"metadata": {"name": "web"}, "spec": {"type": "pod"}});
//! let now = time::OffsetDateTime::UNIX_EPOCH;
//! assert_eq!((columns[1].cell)(&workload, now), "pod");
//! ```

use serde_json::Value;
use time::OffsetDateTime;

use crate::kind::ResourceKind;

/// One column of a kind's table.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Column {
    /// The header, as `flotta get` prints it, e.g. `LAST SEEN`.
    pub header: &'static str,
    /// What the column shows (a Table's `columnDefinitions[].description`).
    pub description: &'static str,
    /// Whether the column is shown only in the wide form (`-o wide`; priority 1 in
    /// a Table).
    pub wide_only: bool,
    /// Whether the column is the object's name (format `name` in a Table).
    pub is_name: bool,
    /// The cell of an object, `now` being the time ages are measured to.
    pub cell: fn(&Value, OffsetDateTime) -> String,
}

impl ResourceKind {
    /// The columns of the kind's table, in order (see [`Column`]).
    pub fn columns(self) -> &'static [Column] {
        match self {
            ResourceKind::EdgeDevice => DEVICE,
            ResourceKind::EdgeDeviceSet => DEVICE_SET,
            ResourceKind::EdgeWorkload => WORKLOAD,
            ResourceKind::EdgeDeviceSignedRequest => SIGNED_REQUEST,
            ResourceKind::EdgeConfig => EDGE_CONFIG,
            ResourceKind::PlaybookExecution => PLAYBOOK_EXECUTION,
            ResourceKind::Repository => REPOSITORY,
            ResourceKind::ResourceSync => RESOURCE_SYNC,
            ResourceKind::Secret => SECRET,
            ResourceKind::ConfigMap => CONFIG_MAP,
            ResourceKind::Event => EVENT,
            ResourceKind::Role | ResourceKind::ClusterRole => ROLE,
            ResourceKind::RoleBinding | ResourceKind::ClusterRoleBinding => ROLE_BINDING,
        }
    }
}

const NAME: Column = Column {
    header: "NAME",
    description: "Name of the object (metadata.name)",
    wide_only: false,
    is_name: true,
    cell: |o, _| text(o, "/metadata/name"),
};

const AGE: Column = Column {
    header: "AGE",
    description: "Time since the object was created",
    wide_only: false,
    is_name: false,
    cell: |o, now| age_at(o, "/metadata/creationTimestamp", now),
};

const LABELS: Column = Column {
    header: "LABELS",
    description: "The object's labels",
    wide_only: true,
    is_name: false,
    cell: |o, _| labels(o),
};

const fn column(
    header: &'static str,
    description: &'static str,
    wide_only: bool,
    cell: fn(&Value, OffsetDateTime) -> String,
) -> Column {
    Column {
        header,
        description,
        wide_only,
        is_name: false,
        cell,
    }
}

static DEVICE: &[Column] = &[
    NAME,
    column("PHASE", "status.phase", false, |o, _| {
        or_none(text(o, "/status/phase"))
    }),
    column(
        "ONLINE",
        "online, offline or unknown, from the Online condition",
        false,
        |o, _| online(o),
    ),
    column(
        "UPDATED",
        "Reason of the Updated condition (UpToDate, Updating, OutOfDate)",
        false,
        |o, _| updated(o),
    ),
    column(
        "WORKLOADS",
        "Number of workloads the device reports",
        false,
        |o, _| {
            o.pointer("/status/workloads")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
                .to_string()
        },
    ),
    column(
        "LAST SEEN",
        "Time since the device's last heartbeat",
        false,
        |o, now| {
            if o.pointer("/status/lastSeen").is_some() {
                age_at(o, "/status/lastSeen", now)
            } else {
                "<never>".into()
            }
        },
    ),
    AGE,
    column(
        "ARCH",
        "CPU architecture the device reports",
        true,
        |o, _| or_none(text(o, "/status/hardware/cpu/architecture")),
    ),
    column("HOSTNAME", "Host name the device reports", true, |o, _| {
        or_none(text(o, "/status/hardware/hostname"))
    }),
    LABELS,
];

static DEVICE_SET: &[Column] = &[
    NAME,
    column(
        "SELECTOR",
        "Label selector of the set's members",
        false,
        |o, _| selector_text(o.pointer("/spec/selector")),
    ),
    column("DEVICES", "Number of member devices", false, |o, _| {
        or_none(text(o, "/status/deviceCount"))
    }),
    column(
        "UPDATED",
        "Members running the set's configuration",
        false,
        |o, _| or_none(text(o, "/status/updatedDevices")),
    ),
    AGE,
    LABELS,
];

static WORKLOAD: &[Column] = &[
    NAME,
    column("TYPE", "spec.type", false, |o, _| text(o, "/spec/type")),
    column(
        "TARGET",
        "The device (spec.device) or the device selector",
        false,
        |o, _| match o.pointer("/spec/device").and_then(Value::as_str) {
            Some(device) => format!("device={device}"),
            None => selector_text(o.pointer("/spec/deviceSelector")),
        },
    ),
    column("RUNNING", "Devices running the workload", false, |o, _| {
        or_none(text(o, "/status/phaseCounts/running"))
    }),
    column(
        "CURRENT",
        "Devices on the current revision / devices targeted",
        true,
        |o, _| match o.pointer("/status/devices") {
            Some(devices) => format!(
                "{}/{}",
                text(devices, "/current"),
                text(devices, "/targeted")
            ),
            None => "<none>".into(),
        },
    ),
    column(
        "FAILED",
        "Devices where the workload failed",
        true,
        |o, _| or_none(text(o, "/status/phaseCounts/failed")),
    ),
    column(
        "DEPLOYING",
        "Devices deploying the workload",
        true,
        |o, _| or_none(text(o, "/status/phaseCounts/deploying")),
    ),
    AGE,
    LABELS,
];

static SIGNED_REQUEST: &[Column] = &[
    NAME,
    column(
        "TARGET NAMESPACE",
        "Namespace the device lands in",
        false,
        |o, _| text(o, "/spec/targetNamespace"),
    ),
    column("CONDITION", "Approved, Denied or Pending", false, |o, _| {
        enrolment_state(o).into()
    }),
    AGE,
    column("TARGET SET", "spec.targetSet", true, |o, _| {
        or_none(text(o, "/spec/targetSet"))
    }),
    LABELS,
];

static SECRET: &[Column] = &[
    NAME,
    column("TYPE", "The secret's type", false, |o, _| {
        or_none(text(o, "/type"))
    }),
    column("DATA", "Number of keys", false, |o, _| {
        data_count(o, &["/data"])
    }),
    AGE,
    LABELS,
];

static CONFIG_MAP: &[Column] = &[
    NAME,
    column("DATA", "Number of keys", false, |o, _| {
        data_count(o, &["/data", "/binaryData"])
    }),
    AGE,
    LABELS,
];

static EVENT: &[Column] = &[
    column(
        "LAST SEEN",
        "Time since the event last happened",
        false,
        |o, now| {
            let at = if o.pointer("/lastTimestamp").is_some() {
                "/lastTimestamp"
            } else {
                "/metadata/creationTimestamp"
            };
            age_at(o, at, now)
        },
    ),
    column("TYPE", "Normal or Warning", false, |o, _| {
        or_none(text(o, "/type"))
    }),
    column("REASON", "Why the event happened", false, |o, _| {
        or_none(text(o, "/reason"))
    }),
    column(
        "OBJECT",
        "The object the event is about, KIND/NAME",
        false,
        |o, _| {
            let kind = text(o, "/involvedObject/kind");
            let singular = ResourceKind::from_kind(&kind)
                .map_or(kind.to_ascii_lowercase(), |k| k.singular().to_owned());
            format!("{singular}/{}", text(o, "/involvedObject/name"))
        },
    ),
    column("COUNT", "How many times it happened", false, |o, _| {
        o.pointer("/count")
            .and_then(Value::as_i64)
            .unwrap_or(1)
            .to_string()
    }),
    column("MESSAGE", "What happened", false, |o, _| {
        text(o, "/message").replace('\n', " ")
    }),
    column("SOURCE", "The component that reported it", true, |o, _| {
        or_none(text(o, "/source/component"))
    }),
    Column {
        wide_only: true,
        ..NAME
    },
];

static EDGE_CONFIG: &[Column] = &[
    NAME,
    column(
        "PLAYBOOKS",
        "Number of playbooks (spec.edgePlaybook.playbooks)",
        false,
        |o, _| {
            o.pointer("/spec/edgePlaybook/playbooks")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
                .to_string()
        },
    ),
    column(
        "TIMEOUT",
        "spec.edgePlaybook.playbooks[0].timeoutSeconds",
        true,
        |o, _| {
            or_none(
                o.pointer("/spec/edgePlaybook/playbooks/0/timeoutSeconds")
                    .and_then(Value::as_i64)
                    .map(|s| format!("{s}s"))
                    .unwrap_or_default(),
            )
        },
    ),
    AGE,
];

static PLAYBOOK_EXECUTION: &[Column] = &[
    NAME,
    column(
        "DEVICE",
        "The device that runs it (label management.project-flotta.io/device)",
        false,
        |o, _| text(o, "/metadata/labels/management.project-flotta.io~1device"),
    ),
    column(
        "STATUS",
        "The state last reported (the True condition)",
        false,
        |o, _| or_none(current_condition_type(o)),
    ),
    column(
        "MESSAGE",
        "What the device said of it (the True condition's message)",
        true,
        |o, _| {
            or_none(
                current_condition(o)
                    .and_then(|c| c.get("message"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            )
        },
    ),
    AGE,
];

static REPOSITORY: &[Column] = &[
    NAME,
    column("TYPE", "spec.type", false, |o, _| text(o, "/spec/type")),
    column("URL", "spec.url", false, |o, _| text(o, "/spec/url")),
    column(
        "ACCESSIBLE",
        "Whether the last fetch succeeded (condition Accessible)",
        false,
        |o, _| condition_status(o, "Accessible"),
    ),
    AGE,
];

static RESOURCE_SYNC: &[Column] = &[
    NAME,
    column("REPOSITORY", "spec.repository", false, |o, _| {
        text(o, "/spec/repository")
    }),
    column("REVISION", "spec.targetRevision", false, |o, _| {
        text(o, "/spec/targetRevision")
    }),
    column("PATH", "spec.path", true, |o, _| text(o, "/spec/path")),
    column(
        "COMMIT",
        "The commit applied (status.observedCommit), shortened",
        false,
        |o, _| {
            let commit = text(o, "/status/observedCommit");
            or_none(commit.chars().take(12).collect())
        },
    ),
    column(
        "SYNCED",
        "Whether the last sync applied everything (condition Synced)",
        false,
        |o, _| condition_status(o, "Synced"),
    ),
    AGE,
];

static ROLE: &[Column] = &[
    NAME,
    column("RULES", "Number of policy rules", false, |o, _| {
        o.pointer("/rules")
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
            .to_string()
    }),
    AGE,
];

static ROLE_BINDING: &[Column] = &[
    NAME,
    column("ROLE", "The role bound, KIND/NAME", false, |o, _| {
        format!("{}/{}", text(o, "/roleRef/kind"), text(o, "/roleRef/name"))
    }),
    column(
        "SUBJECTS",
        "Who the role is bound to, KIND/NAME",
        false,
        |o, _| {
            o.pointer("/subjects")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|s| format!("{}/{}", text(s, "/kind"), text(s, "/name")))
                .collect::<Vec<_>>()
                .join(",")
        },
    ),
    AGE,
];

/// The text at `pointer`: a string as is, other values as JSON, nothing as empty.
fn text(object: &Value, pointer: &str) -> String {
    match object.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn or_none(s: String) -> String {
    if s.is_empty() { "<none>".into() } else { s }
}

/// The condition `type_` of an object's `status.conditions`.
fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
}

/// The condition whose status is `True` (the state a playbook execution is in).
fn current_condition(object: &Value) -> Option<&Value> {
    object
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .rev()
        .find(|c| c.get("status").and_then(Value::as_str) == Some("True"))
}

/// The type of [`current_condition`], empty without one.
fn current_condition_type(object: &Value) -> String {
    current_condition(object)
        .and_then(|c| c.get("type"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The status (`True`, `False`, `Unknown`) of condition `type_`, `<none>` without it.
fn condition_status(object: &Value, type_: &str) -> String {
    or_none(
        condition(object, type_)
            .and_then(|c| c.get("status"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    )
}

/// `online`, `offline` or `unknown` from the device's `Online` condition.
fn online(object: &Value) -> String {
    match condition(object, "Online")
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str)
    {
        Some("True") => "online".into(),
        Some("False") => "offline".into(),
        Some(_) => "unknown".into(),
        None => "<none>".into(),
    }
}

/// The reason of the device's `Updated` condition.
fn updated(object: &Value) -> String {
    or_none(
        condition(object, "Updated")
            .and_then(|c| c.get("reason"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    )
}

/// Where an enrolment request stands: `Approved` (`spec.approved`), `Denied` (a
/// true `declined` condition) or `Pending`.
pub fn enrolment_state(request: &Value) -> &'static str {
    let approved = request.pointer("/spec/approved").and_then(Value::as_bool) == Some(true);
    let declined = condition(request, "declined")
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str)
        == Some("True");
    if approved {
        "Approved"
    } else if declined {
        "Denied"
    } else {
        "Pending"
    }
}

/// A short age such as `45s`, `12m`, `3h`, `5d` (never negative).
pub fn age(since: OffsetDateTime, now: OffsetDateTime) -> String {
    let seconds = (now - since).whole_seconds().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn age_at(object: &Value, pointer: &str, now: OffsetDateTime) -> String {
    crate::timestamp::parse_rfc3339(&text(object, pointer))
        .map(|t| age(t, now))
        .unwrap_or_else(|| "<unknown>".into())
}

fn labels(object: &Value) -> String {
    match object.pointer("/metadata/labels") {
        Some(Value::Object(map)) if !map.is_empty() => map
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<none>".into(),
    }
}

/// A label selector object (`matchLabels`, `matchExpressions`) written in the text
/// grammar; `<none>` for no selector, `<all>` for an empty one.
pub fn selector_text(selector: Option<&Value>) -> String {
    let Some(selector) = selector.filter(|s| !s.is_null()) else {
        return "<none>".into();
    };
    let mut parts = Vec::new();
    if let Some(Value::Object(labels)) = selector.get("matchLabels") {
        for (k, v) in labels {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    if let Some(Value::Array(expressions)) = selector.get("matchExpressions") {
        for e in expressions {
            let key = text(e, "/key");
            let values: Vec<String> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|vs| {
                    vs.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            parts.push(match text(e, "/operator").as_str() {
                "In" => format!("{key} in ({})", values.join(",")),
                "NotIn" => format!("{key} notin ({})", values.join(",")),
                "Exists" => key,
                "DoesNotExist" => format!("!{key}"),
                other => format!("{key} {other}"),
            });
        }
    }
    if parts.is_empty() {
        "<all>".into()
    } else {
        parts.join(",")
    }
}

/// How many keys the maps at `pointers` hold (a secret's or config map's DATA).
fn data_count(object: &Value, pointers: &[&str]) -> String {
    pointers
        .iter()
        .filter_map(|p| object.pointer(p).and_then(Value::as_object))
        .map(serde_json::Map::len)
        .sum::<usize>()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ages_pick_a_readable_unit() {
        let now = OffsetDateTime::now_utc();
        assert_eq!(age(now - time::Duration::seconds(5), now), "5s");
        assert_eq!(age(now - time::Duration::minutes(30), now), "30m");
        assert_eq!(age(now - time::Duration::hours(5), now), "5h");
        assert_eq!(age(now - time::Duration::days(9), now), "9d");
        assert_eq!(age(now + time::Duration::seconds(5), now), "0s");
    }

    #[test]
    fn selectors_print_in_the_text_grammar() {
        let selector = json!({"matchLabels": {"site": "lab"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}, {"key": "x", "operator": "DoesNotExist"}]});
        assert_eq!(selector_text(Some(&selector)), "site=lab,tier in (a,b),!x");
        assert_eq!(selector_text(None), "<none>");
        assert_eq!(selector_text(Some(&json!({}))), "<all>");
    }

    #[test]
    fn every_kind_has_one_name_column_and_headers_are_unique() {
        for kind in ResourceKind::ALL {
            let columns = kind.columns();
            assert_eq!(
                columns.iter().filter(|c| c.is_name).count(),
                1,
                "{kind} has one name column"
            );
            let mut headers: Vec<_> = columns.iter().map(|c| c.header).collect();
            headers.sort_unstable();
            headers.dedup();
            assert_eq!(headers.len(), columns.len(), "{kind} repeats a header");
        }
    }

    #[test]
    fn device_cells_read_status_and_conditions() {
        let now = crate::timestamp::parse_rfc3339("2024-05-01T10:10:00Z").expect("time");
        let device = json!({
            "metadata": {"name": "d1", "creationTimestamp": "2024-05-01T10:00:00Z"},
            "status": {"phase": "up", "lastSeen": "2024-05-01T10:09:30Z",
                       "conditions": [{"type": "Online", "status": "True"}]},
        });
        let cells: Vec<String> = ResourceKind::EdgeDevice
            .columns()
            .iter()
            .filter(|c| !c.wide_only)
            .map(|c| (c.cell)(&device, now))
            .collect();
        assert_eq!(cells, ["d1", "up", "online", "<none>", "0", "30s", "10m"]);
        assert_eq!(
            enrolment_state(
                &json!({"status": {"conditions": [{"type": "declined", "status": "True"}]}})
            ),
            "Denied"
        );
    }
}
