//! `describe`: one object in detail, and the CRD text of `crds`.

use std::fmt::Write as _;
use std::io::Write as _;

use flotta_client::ManagementClient;
use flotta_core::model::{EdgeDevice, Event, Hardware};
use serde_json::Value;
use time::OffsetDateTime;

use crate::CliError;
use crate::kind::Kind;
use crate::output::{age, parse_time};

/// The CustomResourceDefinitions of the four resources, as YAML documents.
pub fn crds_yaml() -> Result<String, String> {
    flotta_core::crd::to_yaml().map_err(|e| format!("cannot generate the CRDs: {e}"))
}

/// Prints a description of one object.
pub async fn describe(
    client: &ManagementClient,
    namespace: &str,
    kind: Kind,
    name: &str,
) -> Result<(), CliError> {
    let object = client
        .get_raw(kind.resource_type(), namespace, name)
        .await?;
    let now = OffsetDateTime::now_utc();
    let text = match kind {
        Kind::Device => {
            let device: EdgeDevice = serde_json::from_value(object.clone()).map_err(|e| {
                CliError::Failed(format!(
                    "edgedevice/{name}: unexpected shape from server: {e}"
                ))
            })?;
            describe_device(&object, &device, now)
        }
        Kind::Secret | Kind::ConfigMap => describe_data(&object, now),
        _ => describe_generic(&object, now),
    };
    let mut text = text;
    if kind != Kind::Event {
        // An old server without events must not spoil the description.
        let events = client
            .events_for(namespace, kind.resource_type(), name)
            .await
            .map_err(|e| crate::one_line(&e));
        events_section(&mut text, events, now);
    }
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

/// Most events `describe` shows (the most recent ones).
const DESCRIBED_EVENTS: usize = 20;

/// The `Events:` section, as kubectl prints it: the most recent last.
fn events_section(out: &mut String, events: Result<Vec<Event>, String>, now: OffsetDateTime) {
    let events = match events {
        Ok(events) if events.is_empty() => {
            let _ = writeln!(out, "Events:       <none>");
            return;
        }
        Ok(events) => events,
        Err(error) => {
            let _ = writeln!(out, "Events:       <unavailable: {error}>");
            return;
        }
    };
    let _ = writeln!(out, "Events:");
    let mut rows = vec![
        ["Type", "Reason", "Age", "From", "Message"].map(str::to_owned),
        ["----", "------", "---", "----", "-------"].map(str::to_owned),
    ];
    let skip = events.len().saturating_sub(DESCRIBED_EVENTS);
    for event in &events[skip..] {
        let last = event
            .last_timestamp
            .as_ref()
            .and_then(|t| parse_time(&t.0.to_string()));
        let mut seen = last.map_or_else(|| "<unknown>".to_owned(), |t| age(t, now));
        if let Some(count) = event.count.filter(|c| *c > 1) {
            seen = format!("{seen} (x{count})");
        }
        rows.push([
            event.type_.clone().unwrap_or_default(),
            event.reason.clone().unwrap_or_default(),
            seen,
            event
                .source
                .as_ref()
                .and_then(|s| s.component.clone())
                .unwrap_or_default(),
            event.message.clone().unwrap_or_default().replace('\n', " "),
        ]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|column| rows.iter().map(|r| r[column].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::from("  ");
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        line.push_str(&row[4]);
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn time_with_age(text: &str, now: OffsetDateTime) -> String {
    match parse_time(text) {
        Some(t) => format!("{text} ({} ago)", age(t, now)),
        None => text.to_owned(),
    }
}

fn time_field(object: &Value, pointer: &str, now: OffsetDateTime) -> Option<String> {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(|t| time_with_age(t, now))
}

/// Name, namespace, labels, annotations and creation time.
fn header(out: &mut String, object: &Value, now: OffsetDateTime) {
    let text = |p: &str| {
        object
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let _ = writeln!(out, "Name:         {}", text("/metadata/name"));
    let _ = writeln!(out, "Namespace:    {}", text("/metadata/namespace"));
    let _ = writeln!(out, "Kind:         {}", text("/kind"));
    for (title, pointer) in [
        ("Labels:", "/metadata/labels"),
        ("Annotations:", "/metadata/annotations"),
    ] {
        let entries: Vec<String> = object
            .pointer(pointer)
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        if entries.is_empty() {
            let _ = writeln!(out, "{title:<14}<none>");
        } else {
            for (i, entry) in entries.iter().enumerate() {
                let title = if i == 0 { title } else { "" };
                let _ = writeln!(out, "{title:<14}{entry}");
            }
        }
    }
    if let Some(created) = time_field(object, "/metadata/creationTimestamp", now) {
        let _ = writeln!(out, "Created:      {created}");
    }
}

fn hardware_summary(out: &mut String, hardware: &Hardware) {
    let _ = writeln!(out, "Hardware:");
    if let Some(hostname) = &hardware.hostname {
        let _ = writeln!(out, "  Hostname:    {hostname}");
    }
    if let Some(cpu) = &hardware.cpu {
        let mut parts = Vec::new();
        if let Some(arch) = &cpu.architecture {
            parts.push(arch.clone());
        }
        if let Some(count) = cpu.count {
            parts.push(format!("{count} CPUs"));
        }
        if let Some(model) = &cpu.model_name {
            parts.push(model.clone());
        }
        let _ = writeln!(out, "  CPU:         {}", parts.join(", "));
    }
    if let Some(bytes) = hardware.memory.as_ref().and_then(|m| m.physical_bytes) {
        let _ = writeln!(
            out,
            "  Memory:      {:.1} GiB",
            bytes as f64 / f64::from(1u32 << 30)
        );
    }
    if let Some(vendor) = &hardware.system_vendor {
        let text: Vec<&str> = [&vendor.manufacturer, &vendor.product_name]
            .into_iter()
            .filter_map(|s| s.as_deref())
            .collect();
        if !text.is_empty() {
            let _ = writeln!(out, "  Vendor:      {}", text.join(" "));
        }
    }
    let _ = writeln!(out, "  Disks:       {}", hardware.disks.len());
    let interfaces: Vec<String> = hardware
        .interfaces
        .iter()
        .map(|i| {
            let name = i.name.clone().unwrap_or_else(|| "?".into());
            match i.ipv4_addresses.as_ref().and_then(|a| a.first()) {
                Some(address) => format!("{name} ({address})"),
                None => name,
            }
        })
        .collect();
    if !interfaces.is_empty() {
        let _ = writeln!(out, "  Interfaces:  {}", interfaces.join(", "));
    }
}

fn conditions(out: &mut String, conditions: Option<&Value>, now: OffsetDateTime) {
    let _ = writeln!(out, "Conditions:");
    let list = conditions
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty());
    let Some(list) = list else {
        let _ = writeln!(out, "  <none>");
        return;
    };
    let mut rows = vec![vec![
        "TYPE".to_owned(),
        "STATUS".to_owned(),
        "REASON".to_owned(),
        "SINCE".to_owned(),
        "MESSAGE".to_owned(),
    ]];
    for c in list {
        let text = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let since = parse_time(&text("lastTransitionTime"))
            .map(|t| age(t, now))
            .unwrap_or_default();
        rows.push(vec![
            text("type"),
            text("status"),
            text("reason"),
            since,
            text("message"),
        ]);
    }
    indent_table(out, &rows);
}

fn indent_table(out: &mut String, rows: &[Vec<String>]) {
    let mut buffer = Vec::new();
    if crate::output::write_aligned(&mut buffer, rows).is_ok() {
        for line in String::from_utf8_lossy(&buffer).lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
}

fn describe_device(object: &Value, device: &EdgeDevice, now: OffsetDateTime) -> String {
    let mut out = String::new();
    header(&mut out, object, now);
    let status = device.status.as_ref();
    let phase = status
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("<unknown>");
    let _ = writeln!(out, "Phase:        {phase}");
    let last_seen = time_field(object, "/status/lastSeen", now).unwrap_or_else(|| "<never>".into());
    let _ = writeln!(out, "Last Seen:    {last_seen}");
    if let Some(os) = &device.spec.os_information {
        let target = os
            .image
            .clone()
            .or_else(|| os.commit_id.clone())
            .unwrap_or_else(|| "<none>".into());
        let _ = writeln!(out, "OS Target:    {target}");
    }
    if let Some(upgrade) = status.and_then(|s| s.upgrade_information.as_ref()) {
        let _ = writeln!(
            out,
            "OS Commit:    {} (last upgrade: {})",
            upgrade.current_commit_id,
            upgrade.last_upgrade_status.as_deref().unwrap_or("none")
        );
    }
    match status.and_then(|s| s.hardware.as_ref()) {
        Some(hardware) => hardware_summary(&mut out, hardware),
        None => {
            let _ = writeln!(out, "Hardware:     <not reported>");
        }
    }
    let _ = writeln!(out, "Workloads:");
    let workloads = status
        .and_then(|s| s.workloads.as_ref())
        .filter(|w| !w.is_empty());
    match workloads {
        None => {
            let _ = writeln!(out, "  <none>");
        }
        Some(workloads) => {
            let mut rows = vec![vec![
                "NAME".to_owned(),
                "PHASE".to_owned(),
                "REVISION".to_owned(),
                "SINCE".to_owned(),
            ]];
            for (i, workload) in workloads.iter().enumerate() {
                let since = object
                    .pointer(&format!("/status/workloads/{i}/lastTransitionTime"))
                    .and_then(Value::as_str)
                    .and_then(parse_time)
                    .map(|t| age(t, now))
                    .unwrap_or_default();
                // The first 12 hex digits name a revision well enough for people.
                let revision = workload
                    .revision
                    .as_deref()
                    .map_or_else(|| "<unknown>".to_owned(), |r| r.chars().take(12).collect());
                rows.push(vec![
                    workload.name.clone(),
                    workload.phase.clone().unwrap_or_else(|| "<unknown>".into()),
                    revision,
                    since,
                ]);
            }
            indent_table(&mut out, &rows);
        }
    }
    conditions(&mut out, object.pointer("/status/conditions"), now);
    out
}

/// A secret or config map as kubectl describes it: its keys and their sizes, never
/// a value.
fn describe_data(object: &Value, now: OffsetDateTime) -> String {
    use base64::Engine;
    let mut out = String::new();
    header(&mut out, object, now);
    if let Some(kind) = object.get("type").and_then(Value::as_str) {
        let _ = writeln!(out, "Type:         {kind}");
    }
    let _ = writeln!(out, "Data");
    let _ = writeln!(out, "====");
    let secret = object.get("kind").and_then(Value::as_str) == Some("Secret");
    let mut rows: Vec<(String, usize)> = Vec::new();
    for (field, base64) in [("data", secret), ("binaryData", true)] {
        for (key, value) in object
            .get(field)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let text = value.as_str().unwrap_or_default();
            let size = if base64 {
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_or(0, |b| b.len())
            } else {
                text.len()
            };
            rows.push((key.clone(), size));
        }
    }
    if rows.is_empty() {
        let _ = writeln!(out, "  <none>");
    }
    for (key, size) in rows {
        let _ = writeln!(out, "{key}:  {size} bytes");
    }
    out
}

fn describe_generic(object: &Value, now: OffsetDateTime) -> String {
    let mut out = String::new();
    header(&mut out, object, now);
    for (title, key) in [("Spec:", "spec"), ("Status:", "status")] {
        let _ = writeln!(out, "{title}");
        match object.get(key).filter(|v| !v.is_null()) {
            None => {
                let _ = writeln!(out, "  <none>");
            }
            Some(value) => {
                let yaml = serde_yaml_ng::to_string(value).unwrap_or_default();
                for line in yaml.lines() {
                    let _ = writeln!(out, "  {line}");
                }
            }
        }
    }
    if object.pointer("/status/conditions").is_some() {
        conditions(&mut out, object.pointer("/status/conditions"), now);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_description_shows_sizes_never_values() {
        let object = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "db", "namespace": "default"},
            "data": {"password": "aHVudGVyMg=="},
        });
        let text = describe_data(&object, OffsetDateTime::now_utc());
        assert!(text.contains("password:  7 bytes"), "{text}");
        assert!(
            !text.contains("aHVudGVyMg") && !text.contains("hunter2"),
            "{text}"
        );
        assert!(text.contains("Type:         Opaque"), "{text}");
    }

    #[test]
    fn a_device_description_has_every_section() {
        let now = OffsetDateTime::now_utc();
        let seen = flotta_core::timestamp::rfc3339(now - time::Duration::seconds(30));
        let object = serde_json::json!({
            "apiVersion": "management.project-flotta.io/v1alpha1",
            "kind": "EdgeDevice",
            "metadata": {"name": "edge-01", "namespace": "default", "labels": {"site": "lab", "tier": "edge"}},
            "spec": {},
            "status": {
                "phase": "up",
                "lastSeen": seen,
                "hardware": {"hostname": "rpi", "cpu": {"architecture": "aarch64", "count": 4, "flags": []}, "disks": [], "gpus": [], "interfaces": [{"name": "eth0", "flags": [], "ipv4Addresses": ["10.0.0.2/24"]}], "memory": {"physicalBytes": 4294967296_i64}},
                "workloads": [{"name": "web", "phase": "Running"}],
            }
        });
        let device: EdgeDevice = serde_json::from_value(object.clone()).expect("device");
        let text = describe_device(&object, &device, now);
        for expected in [
            "Name:         edge-01",
            "Labels:       site=lab",
            "              tier=edge",
            "Phase:        up",
            "(30s ago)",
            "aarch64, 4 CPUs",
            "Memory:      4.0 GiB",
            "eth0 (10.0.0.2/24)",
            "web    Running",
            "Conditions:",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }
}
