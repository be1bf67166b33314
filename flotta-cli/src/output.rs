//! Printing objects: aligned tables, YAML, JSON and `kind/name` lines.

use std::io::{self, Write};

use clap::ValueEnum;
use serde_json::Value;
use time::OffsetDateTime;

use crate::kind::Kind;

/// Output format of `get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// Aligned columns with more of them.
    Wide,
    /// YAML documents (re-appliable with `flotta apply`).
    Yaml,
    /// JSON.
    Json,
    /// `kind/name` lines.
    Name,
}

/// A column of a table: its header and how to read its cell from an object.
struct Column {
    header: &'static str,
    cell: fn(&Value) -> String,
    wide_only: bool,
}

fn text(object: &Value, pointer: &str) -> String {
    match object.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// When an event last happened: `lastTimestamp`, else its creation time (RFC 3339
/// text in UTC, so it sorts as time does).
pub fn event_time(event: &Value) -> Option<&str> {
    event
        .pointer("/lastTimestamp")
        .or_else(|| event.pointer("/metadata/creationTimestamp"))
        .and_then(Value::as_str)
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

/// The reason of the device's `Updated` condition (`UpToDate`, `Updating`,
/// `OutOfDate`).
fn updated(object: &Value) -> String {
    or_none(
        condition(object, "Updated")
            .and_then(|c| c.get("reason"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    )
}

/// Parses an RFC 3339 time.
pub fn parse_time(text: &str) -> Option<OffsetDateTime> {
    flotta_core::timestamp::parse_rfc3339(text)
}

/// A short age such as `45s`, `12m`, `3h`, `5d`.
pub fn age(since: OffsetDateTime, now: OffsetDateTime) -> String {
    let seconds = (now - since).whole_seconds().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn age_at(object: &Value, pointer: &str) -> String {
    parse_time(&text(object, pointer))
        .map(|t| age(t, OffsetDateTime::now_utc()))
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
/// grammar.
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

fn columns(kind: Kind) -> Vec<Column> {
    let name = Column {
        header: "NAME",
        cell: |o| text(o, "/metadata/name"),
        wide_only: false,
    };
    let age_column = Column {
        header: "AGE",
        cell: |o| age_at(o, "/metadata/creationTimestamp"),
        wide_only: false,
    };
    let labels_column = Column {
        header: "LABELS",
        cell: labels,
        wide_only: true,
    };
    match kind {
        Kind::Device => vec![
            name,
            Column {
                header: "PHASE",
                cell: |o| or_none(text(o, "/status/phase")),
                wide_only: false,
            },
            Column {
                header: "ONLINE",
                cell: online,
                wide_only: false,
            },
            Column {
                header: "UPDATED",
                cell: updated,
                wide_only: false,
            },
            Column {
                header: "WORKLOADS",
                cell: |o| {
                    o.pointer("/status/workloads")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len)
                        .to_string()
                },
                wide_only: false,
            },
            Column {
                header: "LAST SEEN",
                cell: |o| {
                    if o.pointer("/status/lastSeen").is_some() {
                        age_at(o, "/status/lastSeen")
                    } else {
                        "<never>".into()
                    }
                },
                wide_only: false,
            },
            age_column,
            Column {
                header: "ARCH",
                cell: |o| or_none(text(o, "/status/hardware/cpu/architecture")),
                wide_only: true,
            },
            Column {
                header: "HOSTNAME",
                cell: |o| or_none(text(o, "/status/hardware/hostname")),
                wide_only: true,
            },
            labels_column,
        ],
        Kind::Set => vec![
            name,
            Column {
                header: "SELECTOR",
                cell: |o| selector_text(o.pointer("/spec/selector")),
                wide_only: false,
            },
            Column {
                header: "DEVICES",
                cell: |o| or_none(text(o, "/status/deviceCount")),
                wide_only: false,
            },
            Column {
                header: "UPDATED",
                cell: |o| or_none(text(o, "/status/updatedDevices")),
                wide_only: false,
            },
            age_column,
            labels_column,
        ],
        Kind::Workload => vec![
            name,
            Column {
                header: "TYPE",
                cell: |o| text(o, "/spec/type"),
                wide_only: false,
            },
            Column {
                header: "TARGET",
                cell: |o| match o.pointer("/spec/device").and_then(Value::as_str) {
                    Some(device) => format!("device={device}"),
                    None => selector_text(o.pointer("/spec/deviceSelector")),
                },
                wide_only: false,
            },
            Column {
                header: "RUNNING",
                cell: |o| or_none(text(o, "/status/phaseCounts/running")),
                wide_only: false,
            },
            Column {
                header: "CURRENT",
                cell: |o| match o.pointer("/status/devices") {
                    Some(devices) => format!(
                        "{}/{}",
                        text(devices, "/current"),
                        text(devices, "/targeted")
                    ),
                    None => "<none>".into(),
                },
                wide_only: true,
            },
            Column {
                header: "FAILED",
                cell: |o| or_none(text(o, "/status/phaseCounts/failed")),
                wide_only: true,
            },
            Column {
                header: "DEPLOYING",
                cell: |o| or_none(text(o, "/status/phaseCounts/deploying")),
                wide_only: true,
            },
            age_column,
            labels_column,
        ],
        Kind::Event => vec![
            Column {
                header: "LAST SEEN",
                cell: |o| {
                    let at = if o.pointer("/lastTimestamp").is_some() {
                        "/lastTimestamp"
                    } else {
                        "/metadata/creationTimestamp"
                    };
                    age_at(o, at)
                },
                wide_only: false,
            },
            Column {
                header: "TYPE",
                cell: |o| or_none(text(o, "/type")),
                wide_only: false,
            },
            Column {
                header: "REASON",
                cell: |o| or_none(text(o, "/reason")),
                wide_only: false,
            },
            Column {
                header: "OBJECT",
                cell: |o| {
                    let kind = text(o, "/involvedObject/kind");
                    let singular = flotta_core::kind::ResourceKind::from_kind(&kind)
                        .map_or(kind.to_ascii_lowercase(), |k| k.singular().to_owned());
                    format!("{singular}/{}", text(o, "/involvedObject/name"))
                },
                wide_only: false,
            },
            Column {
                header: "COUNT",
                cell: |o| {
                    o.pointer("/count")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                        .to_string()
                },
                wide_only: false,
            },
            Column {
                header: "MESSAGE",
                cell: |o| text(o, "/message").replace('\n', " "),
                wide_only: false,
            },
            Column {
                header: "SOURCE",
                cell: |o| or_none(text(o, "/source/component")),
                wide_only: true,
            },
            Column {
                wide_only: true,
                ..name
            },
        ],
        Kind::SignedRequest => vec![
            name,
            Column {
                header: "TARGET NAMESPACE",
                cell: |o| text(o, "/spec/targetNamespace"),
                wide_only: false,
            },
            Column {
                header: "CONDITION",
                cell: |o| crate::commands::enrolment_state(o).into(),
                wide_only: false,
            },
            age_column,
            Column {
                header: "TARGET SET",
                cell: |o| or_none(text(o, "/spec/targetSet")),
                wide_only: true,
            },
            labels_column,
        ],
        Kind::Secret => vec![
            name,
            Column {
                header: "TYPE",
                cell: |o| or_none(text(o, "/type")),
                wide_only: false,
            },
            Column {
                header: "DATA",
                cell: |o| data_count(o, &["/data"]),
                wide_only: false,
            },
            age_column,
            labels_column,
        ],
        Kind::ConfigMap => vec![
            name,
            Column {
                header: "DATA",
                cell: |o| data_count(o, &["/data", "/binaryData"]),
                wide_only: false,
            },
            age_column,
            labels_column,
        ],
        Kind::Role | Kind::ClusterRole => vec![
            name,
            Column {
                header: "RULES",
                cell: |o| {
                    o.pointer("/rules")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len)
                        .to_string()
                },
                wide_only: false,
            },
            age_column,
        ],
        Kind::RoleBinding | Kind::ClusterRoleBinding => vec![
            name,
            Column {
                header: "ROLE",
                cell: |o| format!("{}/{}", text(o, "/roleRef/kind"), text(o, "/roleRef/name")),
                wide_only: false,
            },
            Column {
                header: "SUBJECTS",
                cell: |o| {
                    o.pointer("/subjects")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(|s| format!("{}/{}", text(s, "/kind"), text(s, "/name")))
                        .collect::<Vec<_>>()
                        .join(",")
                },
                wide_only: false,
            },
            age_column,
        ],
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

/// Rows of a table for `objects`; with `namespaces`, a NAMESPACE column first.
pub fn table_rows(kind: Kind, objects: &[Value], wide: bool, namespaces: bool) -> Vec<Vec<String>> {
    let columns: Vec<Column> = columns(kind)
        .into_iter()
        .filter(|c| wide || !c.wide_only)
        .collect();
    let mut header: Vec<String> = Vec::new();
    if namespaces {
        header.push("NAMESPACE".into());
    }
    header.extend(columns.iter().map(|c| c.header.to_owned()));
    let mut rows = vec![header];
    for object in objects {
        let mut row = Vec::new();
        if namespaces {
            row.push(text(object, "/metadata/namespace"));
        }
        row.extend(columns.iter().map(|c| (c.cell)(object)));
        rows.push(row);
    }
    rows
}

/// Writes rows as columns aligned to the widest cell, three spaces apart.
pub fn write_aligned(out: &mut impl Write, rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let width = cell.chars().count();
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(width),
                None => widths.push(width),
            }
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let width = widths.get(i).copied().unwrap_or(0);
                line.push_str(&format!("{cell:<width$}   "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Writes one object as YAML (a document) or JSON.
pub fn write_object(out: &mut impl Write, format: Format, object: &Value) -> io::Result<()> {
    match format {
        Format::Json => {
            let text = serde_json::to_string_pretty(object).map_err(io::Error::other)?;
            writeln!(out, "{text}")
        }
        _ => {
            let text = serde_yaml_ng::to_string(object).map_err(io::Error::other)?;
            write!(out, "{text}")
        }
    }
}

/// Writes objects in a non-table format: YAML documents separated by `---`, a JSON
/// `List`, or `kind/name` lines.
pub fn write_objects(
    out: &mut impl Write,
    format: Format,
    kind: Kind,
    objects: &[Value],
) -> io::Result<()> {
    match format {
        Format::Yaml => {
            for (i, object) in objects.iter().enumerate() {
                if i > 0 {
                    writeln!(out, "---")?;
                }
                write_object(out, format, object)?;
            }
            Ok(())
        }
        Format::Json => write_object(
            out,
            format,
            &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects}),
        ),
        Format::Name => {
            for object in objects {
                writeln!(
                    out,
                    "{}/{}",
                    kind.singular(),
                    text(object, "/metadata/name")
                )?;
            }
            Ok(())
        }
        Format::Table | Format::Wide => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn tables_align_every_column() {
        let rows = vec![
            vec!["NAME".to_owned(), "PHASE".to_owned(), "AGE".to_owned()],
            vec!["a-long-name".to_owned(), "up".to_owned(), "5s".to_owned()],
            vec!["b".to_owned(), "degraded".to_owned(), "10m".to_owned()],
        ];
        let mut out = Vec::new();
        write_aligned(&mut out, &rows).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "NAME          PHASE      AGE");
        assert_eq!(lines[1], "a-long-name   up         5s");
        assert_eq!(lines[2], "b             degraded   10m");
    }

    #[test]
    fn selectors_print_in_the_text_grammar() {
        let selector = serde_json::json!({"matchLabels": {"site": "lab"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}, {"key": "x", "operator": "DoesNotExist"}]});
        assert_eq!(selector_text(Some(&selector)), "site=lab,tier in (a,b),!x");
        assert_eq!(selector_text(None), "<none>");
        assert_eq!(selector_text(Some(&serde_json::json!({}))), "<all>");
    }
}
