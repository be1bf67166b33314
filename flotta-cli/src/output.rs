//! Printing objects: aligned tables, YAML, JSON and `kind/name` lines.

use std::io::{self, Write};

use clap::ValueEnum;
use serde_json::Value;
use time::OffsetDateTime;

use flotta_core::columns::Column;

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

/// Parses an RFC 3339 time.
pub fn parse_time(text: &str) -> Option<OffsetDateTime> {
    flotta_core::timestamp::parse_rfc3339(text)
}

pub use flotta_core::columns::age;

/// Rows of a table for `objects`; with `namespaces`, a NAMESPACE column first.
pub fn table_rows(kind: Kind, objects: &[Value], wide: bool, namespaces: bool) -> Vec<Vec<String>> {
    let now = OffsetDateTime::now_utc();
    let columns: Vec<&Column> = kind
        .resource_type()
        .columns()
        .iter()
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
        row.extend(columns.iter().map(|c| (c.cell)(object, now)));
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

/// Writes one object as YAML (a document) or JSON, without its
/// `metadata.managedFields` (the server's record of field managers, which kubectl
/// too leaves out unless asked).
pub fn write_object(out: &mut impl Write, format: Format, object: &Value) -> io::Result<()> {
    let object = shown(object);
    let object = object.as_ref();
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

/// `object` without `metadata.managedFields`.
fn shown(object: &Value) -> std::borrow::Cow<'_, Value> {
    if object.pointer("/metadata/managedFields").is_none() {
        return std::borrow::Cow::Borrowed(object);
    }
    let mut copy = object.clone();
    if let Some(metadata) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    std::borrow::Cow::Owned(copy)
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
            &serde_json::json!({
                "apiVersion": "v1",
                "kind": "List",
                "items": objects.iter().map(|o| shown(o).into_owned()).collect::<Vec<_>>(),
            }),
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
}
