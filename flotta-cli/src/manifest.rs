//! Reading manifests from files, directories and standard input, and checking them
//! offline.

use std::io::Read;
use std::path::{Path, PathBuf};

use flotta_core::manifest::{self, AnyResource, ManifestError};
use flotta_core::model::API_VERSION;
use flotta_core::validation::{FieldError, Validate};
use serde_json::Value;

use crate::CliError;
use crate::kind::Kind;

/// One manifest source: where it came from and its text.
pub struct Source {
    /// The file path, or `-` for standard input.
    pub name: String,
    /// Its contents.
    pub text: String,
}

fn is_manifest_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// The manifest files of `dir`: its `.yaml`, `.yml` and `.json` files and, with
/// `recursive`, those of every directory below it. They come in path order,
/// component by component: a directory's entries by name, a subdirectory's files
/// where its name falls (as kubectl walks a tree), so every run reads them alike.
/// Symbolic links to directories are not followed (no loop can be walked).
fn manifest_files(dir: &Path, recursive: bool) -> Result<Vec<PathBuf>, CliError> {
    let read_error = |path: &Path| {
        let path = path.display().to_string();
        move |source| CliError::Read { path, source }
    };
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(read_error(&dir))? {
            let entry = entry.map_err(read_error(&dir))?;
            let path = entry.path();
            let is_dir = entry.file_type().map_err(read_error(&path))?.is_dir();
            if is_dir {
                if recursive {
                    pending.push(path);
                }
            } else if path.is_file() && is_manifest_file(&path) {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Reads every argument of `-f`: a file, a directory (its `.yaml`, `.yml` and
/// `.json` files in name order; with `recursive`, those below it too), or `-` for
/// standard input.
pub fn read_sources(arguments: &[String], recursive: bool) -> Result<Vec<Source>, CliError> {
    let mut sources = Vec::new();
    for argument in arguments {
        if argument == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| CliError::Read {
                    path: "standard input".into(),
                    source,
                })?;
            sources.push(Source {
                name: "-".into(),
                text,
            });
            continue;
        }
        let path = Path::new(argument);
        if path.is_dir() {
            let files = manifest_files(path, recursive)?;
            if files.is_empty() {
                let below = if recursive { " or below it" } else { "" };
                return Err(CliError::Usage(format!(
                    "{argument}: no .yaml, .yml or .json files in this directory{below}"
                )));
            }
            for file in files {
                let name = file.display().to_string();
                let text = std::fs::read_to_string(&file).map_err(|source| CliError::Read {
                    path: name.clone(),
                    source,
                })?;
                sources.push(Source { name, text });
            }
        } else {
            let text = std::fs::read_to_string(path).map_err(|source| CliError::Read {
                path: argument.clone(),
                source,
            })?;
            sources.push(Source {
                name: argument.clone(),
                text,
            });
        }
    }
    Ok(sources)
}

/// One problem of one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Zero-based index of the document in its source.
    pub index: usize,
    /// `Kind/name` of the document, when known.
    pub object: Option<String>,
    /// Path of the offending field, when known.
    pub path: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Reads a document as its typed resource and validates it: every problem as
/// (field path, message).
fn decode_and_validate(index: usize, value: Value) -> Vec<(Option<String>, String)> {
    match AnyResource::from_value(index, value) {
        Ok(resource) => resource
            .validate()
            .into_iter()
            .map(|FieldError { path, message }| (Some(path), message))
            .collect(),
        Err(error) => {
            let path = error.field_path().map(str::to_owned);
            let message = match &error {
                ManifestError::InvalidField { source, .. } => source.to_string(),
                ManifestError::UnknownField { .. } => "unknown field".into(),
                other => other.to_string(),
            };
            vec![(path, message)]
        }
    }
}

/// Every problem of every document of `text`; `documents` counts the documents read.
/// The text is read by core's manifest reader, limits included; a stream it cannot
/// read is one problem, at the document that broke it.
pub fn check(text: &str) -> (usize, Vec<Problem>) {
    let mut problems = Vec::new();
    let documents = match manifest::documents(text) {
        Ok(documents) => documents,
        Err(error) => {
            let index = error.document_index().unwrap_or(0);
            let text = error.to_string();
            let prefix = format!("document {index}: ");
            problems.push(Problem {
                index,
                object: None,
                path: error.field_path().map(str::to_owned),
                message: text.strip_prefix(&prefix).unwrap_or(&text).to_owned(),
            });
            return (index + 1, problems);
        }
    };
    let count = documents.len();
    for (index, value) in documents {
        let kind_text = value.get("kind").and_then(Value::as_str).map(str::to_owned);
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let object = kind_text
            .as_ref()
            .map(|k| format!("{k}/{}", name.as_deref().unwrap_or("<no name>")));
        let mut push = |path: Option<String>, message: String| {
            problems.push(Problem {
                index,
                object: object.clone(),
                path,
                message,
            })
        };
        if kind_text
            .as_deref()
            .and_then(Kind::from_kind_field)
            .is_none()
        {
            match kind_text {
                None => push(Some("kind".into()), "missing".into()),
                Some(other) => push(
                    Some("kind".into()),
                    format!(
                        "unknown kind {other:?}: expected EdgeDevice, EdgeDeviceSet, EdgeWorkload or EdgeDeviceSignedRequest"
                    ),
                ),
            }
            continue;
        }
        match value.get("apiVersion").and_then(Value::as_str) {
            Some(API_VERSION) => {}
            Some(other) => push(
                Some("apiVersion".into()),
                format!("must be {API_VERSION}, got {other:?}"),
            ),
            None => push(Some("apiVersion".into()), "missing".into()),
        }
        if name.as_deref().is_none_or(str::is_empty) {
            push(Some("metadata.name".into()), "missing".into());
        }
        let found = decode_and_validate(index, value);
        for (path, message) in found {
            // The name check above already said it.
            if path.as_deref() == Some("metadata.name") && name.as_deref().is_none_or(str::is_empty)
            {
                continue;
            }
            push(path, message);
        }
    }
    (count, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "apiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeDeviceSet\nmetadata:\n  name: lab\nspec:\n  selector:\n    matchLabels:\n      site: lab\n";

    #[test]
    fn directories_are_read_in_path_order_and_only_below_with_recursive() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path();
        for path in ["b.yaml", "a/z.yml", "a/deep/c.json", "a.yaml", "notes.txt"] {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("directory");
            std::fs::write(&path, "{}").expect("file");
        }
        let names = |recursive| -> Vec<String> {
            manifest_files(root, recursive)
                .expect("read")
                .iter()
                .map(|p| p.strip_prefix(root).expect("below").display().to_string())
                .collect()
        };
        assert_eq!(names(false), vec!["a.yaml", "b.yaml"]);
        assert_eq!(
            names(true),
            vec!["a/deep/c.json", "a/z.yml", "a.yaml", "b.yaml"]
        );
    }

    #[test]
    fn a_good_manifest_has_no_problem() {
        let (count, problems) = check(GOOD);
        assert_eq!(count, 1);
        assert_eq!(problems, vec![]);
    }

    #[test]
    fn every_problem_is_listed_with_its_document_and_path() {
        let text = format!(
            "{GOOD}---\nkind: Pod\nmetadata: {{name: p}}\n---\napiVersion: v1\nkind: EdgeDevice\nmetadata:\n  name: Bad_Name\n  labels: {{\"a b\": x}}\n---\napiVersion: management.project-flotta.io/v1alpha1\nkind: EdgeWorkload\nmetadata: {{name: w}}\nspec:\n  type: pod\n  pod: 7\n"
        );
        let (count, problems) = check(&text);
        assert_eq!(count, 4);
        let at = |index: usize| -> Vec<&Problem> {
            problems.iter().filter(|p| p.index == index).collect()
        };
        assert!(at(0).is_empty());
        assert_eq!(at(1).len(), 1);
        assert_eq!(at(1)[0].path.as_deref(), Some("kind"));
        let device: Vec<Option<&str>> = at(2).iter().map(|p| p.path.as_deref()).collect();
        assert!(device.contains(&Some("apiVersion")), "{device:?}");
        assert!(device.contains(&Some("metadata.name")), "{device:?}");
        assert!(
            device
                .iter()
                .any(|p| p.is_some_and(|p| p.starts_with("metadata.labels"))),
            "{device:?}"
        );
        assert_eq!(at(3).len(), 1);
        assert_eq!(at(3)[0].path.as_deref(), Some("spec.pod"));
    }

    #[test]
    fn an_unreadable_stream_is_one_problem_at_its_document() {
        let (_, problems) = check(&format!("{GOOD}---\nkind: [\n"));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].index, 1);
        assert!(
            problems[0].message.starts_with("invalid YAML"),
            "{problems:?}"
        );
        let deep = format!("a: {}1{}\n", "[".repeat(100), "]".repeat(100));
        let (_, problems) = check(&deep);
        assert!(
            problems[0].message.contains("nesting deeper than 64"),
            "{problems:?}"
        );
    }
}
