//! Device-set template parameters, after Flight Control.
//!
//! A string value of a set's `template` may hold parameters between `{{` and `}}`:
//!
//! - `{{ .metadata.name }}`: the device's name;
//! - `{{ .metadata.labels.KEY }}` or `{{ index .metadata.labels "KEY" }}`: the value of
//!   label `KEY`; a device without the label is a render error;
//! - `{{ getOrDefault .metadata.labels "KEY" "DEFAULT" }}`: the value of label `KEY`,
//!   or `DEFAULT` when the device does not have it.
//!
//! Anything else between braces is an error: a template never renders to an empty
//! string by accident.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::model::ObjectMeta;

/// Why a template string did not render.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// A `{{` has no matching `}}`.
    #[error("unterminated parameter starting at byte {offset}")]
    Unterminated {
        /// Byte offset of the `{{` in the string.
        offset: usize,
    },
    /// The text between braces is not one of the supported parameters.
    #[error("unsupported parameter '{expression}' at byte {offset}")]
    UnsupportedExpression {
        /// The text between the braces, trimmed.
        expression: String,
        /// Byte offset of the `{{` in the string.
        offset: usize,
    },
    /// The parameter names a label the device does not have, and gives no default.
    #[error(
        "device has no label '{key}' (parameter at byte {offset}); use getOrDefault to give a default"
    )]
    MissingLabel {
        /// The label key.
        key: String,
        /// Byte offset of the `{{` in the string.
        offset: usize,
    },
    /// The device has no name, which `.metadata.name` needs.
    #[error("device has no name (parameter at byte {offset})")]
    MissingName {
        /// Byte offset of the `{{` in the string.
        offset: usize,
    },
}

/// A template error together with the JSON path of the string it came from.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {source}")]
pub struct TemplateFieldError {
    /// Path of the offending string in the template, e.g. `spec.heartbeat.hardwareProfile.scope`.
    pub path: String,
    /// What went wrong.
    #[source]
    pub source: TemplateError,
}

/// Renders one template string for the device described by `metadata`.
pub fn render_template_string(text: &str, metadata: &ObjectMeta) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut consumed = 0;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let offset = consumed + start;
        let after_open = &rest[start + 2..];
        let Some(end) = after_open.find("}}") else {
            return Err(TemplateError::Unterminated { offset });
        };
        let expression = after_open[..end].trim();
        out.push_str(&evaluate(expression, metadata, offset)?);
        let advance = start + 2 + end + 2;
        consumed += advance;
        rest = &rest[advance..];
    }
    out.push_str(rest);
    Ok(out)
}

fn evaluate(
    expression: &str,
    metadata: &ObjectMeta,
    offset: usize,
) -> Result<String, TemplateError> {
    let unsupported = || TemplateError::UnsupportedExpression {
        expression: expression.to_owned(),
        offset,
    };
    let label = |key: &str| {
        metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(key))
            .cloned()
    };
    if expression == ".metadata.name" {
        return metadata
            .name
            .clone()
            .ok_or(TemplateError::MissingName { offset });
    }
    if let Some(key) = expression.strip_prefix(".metadata.labels.") {
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(unsupported());
        }
        return label(key).ok_or_else(|| TemplateError::MissingLabel {
            key: key.to_owned(),
            offset,
        });
    }
    let words = split_words(expression).ok_or_else(unsupported)?;
    match words.as_slice() {
        [
            Word::Bare("index"),
            Word::Bare(".metadata.labels"),
            Word::Quoted(key),
        ] => label(key).ok_or_else(|| TemplateError::MissingLabel {
            key: key.clone(),
            offset,
        }),
        [
            Word::Bare("getOrDefault"),
            Word::Bare(".metadata.labels"),
            Word::Quoted(key),
            Word::Quoted(default),
        ] => Ok(label(key).unwrap_or_else(|| default.clone())),
        _ => Err(unsupported()),
    }
}

enum Word<'a> {
    Bare(&'a str),
    Quoted(String),
}

/// Splits an expression into bare words and double-quoted strings (with `\"` and `\\`
/// escapes); `None` on an unterminated quote.
fn split_words(expression: &str) -> Option<Vec<Word<'_>>> {
    let mut words = Vec::new();
    let mut rest = expression.trim_start();
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut closed_at = None;
            while let Some((at, c)) = chars.next() {
                match c {
                    '"' => {
                        closed_at = Some(at);
                        break;
                    }
                    '\\' => value.push(chars.next()?.1),
                    other => value.push(other),
                }
            }
            let closed_at = closed_at?;
            words.push(Word::Quoted(value));
            rest = quoted[closed_at + 1..].trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            words.push(Word::Bare(&rest[..end]));
            rest = rest[end..].trim_start();
        }
    }
    Some(words)
}

/// Renders every string inside `value` (object keys stay as they are), collecting one
/// error per offending string with its path under `path_prefix`.
pub fn render_template_value(
    value: &mut Value,
    metadata: &ObjectMeta,
    path_prefix: &str,
) -> Vec<TemplateFieldError> {
    let mut errors = Vec::new();
    let mut path = path_prefix.to_owned();
    render_in_place(value, metadata, &mut path, &mut errors);
    errors
}

fn render_in_place(
    value: &mut Value,
    metadata: &ObjectMeta,
    path: &mut String,
    errors: &mut Vec<TemplateFieldError>,
) {
    match value {
        Value::String(text) => {
            if text.contains("{{") {
                match render_template_string(text, metadata) {
                    Ok(rendered) => *text = rendered,
                    Err(source) => errors.push(TemplateFieldError {
                        path: path.clone(),
                        source,
                    }),
                }
            }
        }
        Value::Array(items) => {
            for (position, item) in items.iter_mut().enumerate() {
                let length = path.len();
                path.push_str(&format!("[{position}]"));
                render_in_place(item, metadata, path, errors);
                path.truncate(length);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let length = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                render_in_place(item, metadata, path, errors);
                path.truncate(length);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Renders a map of strings (template labels or annotations).
pub fn render_template_map(
    map: &BTreeMap<String, String>,
    metadata: &ObjectMeta,
    path_prefix: &str,
) -> Result<BTreeMap<String, String>, Vec<TemplateFieldError>> {
    let mut rendered = BTreeMap::new();
    let mut errors = Vec::new();
    for (key, text) in map {
        match render_template_string(text, metadata) {
            Ok(value) => {
                rendered.insert(key.clone(), value);
            }
            Err(source) => errors.push(TemplateFieldError {
                path: format!("{path_prefix}.{key}"),
                source,
            }),
        }
    }
    if errors.is_empty() {
        Ok(rendered)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn renders_each_supported_parameter() {
        let meta = device("cam-7", &[("site", "lyon"), ("flotta/zone", "z1")]);
        let cases = [
            ("plain", "plain"),
            ("{{ .metadata.name }}", "cam-7"),
            ("{{.metadata.name}}.local", "cam-7.local"),
            ("/etc/{{ .metadata.labels.site }}/x", "/etc/lyon/x"),
            ("{{ index .metadata.labels \"flotta/zone\" }}", "z1"),
            (
                "{{ getOrDefault .metadata.labels \"site\" \"paris\" }}",
                "lyon",
            ),
            (
                "{{ getOrDefault .metadata.labels \"rack\" \"r-0\" }}",
                "r-0",
            ),
            (
                "{{ .metadata.name }}-{{ .metadata.labels.site }}",
                "cam-7-lyon",
            ),
        ];
        for (template, want) in cases {
            assert_eq!(
                render_template_string(template, &meta).as_deref(),
                Ok(want),
                "{template}"
            );
        }
    }

    #[test]
    fn missing_label_is_an_error_not_an_empty_string() {
        let meta = device("cam-7", &[]);
        assert_eq!(
            render_template_string("x-{{ .metadata.labels.site }}", &meta),
            Err(TemplateError::MissingLabel {
                key: "site".into(),
                offset: 2
            })
        );
        assert!(matches!(
            render_template_string("{{ index .metadata.labels \"site\" }}", &meta),
            Err(TemplateError::MissingLabel { .. })
        ));
    }

    #[test]
    fn malformed_parameters_are_errors() {
        let meta = device("cam-7", &[]);
        assert_eq!(
            render_template_string("a {{ .metadata.name", &meta),
            Err(TemplateError::Unterminated { offset: 2 })
        );
        for bad in [
            "{{ .spec.x }}",
            "{{ getOrDefault .metadata.labels \"k\" }}",
            "{{ getOrDefault .metadata.labels \"k\" \"unterminated }}",
            "{{ }}",
        ] {
            assert!(
                matches!(
                    render_template_string(bad, &meta),
                    Err(TemplateError::UnsupportedExpression { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn value_rendering_reports_paths() {
        let meta = device("d1", &[("a", "1")]);
        let mut value = serde_json::json!({
            "files": [{"path": "/x/{{ .metadata.labels.a }}", "content": "{{ .metadata.labels.b }}"}]
        });
        let errors = render_template_value(&mut value, &meta, "spec");
        assert_eq!(value["files"][0]["path"], "/x/1");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "spec.files[0].content");
    }
}
