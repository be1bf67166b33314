//! The audit log: one JSON line per mutating management API request (and, when
//! configured, per read of secrets), saying who did what to which object and how
//! it ended. Request bodies are never written, so a Secret's data never reaches
//! the log.
//!
//! ```text
//! {"time":"2026-12-03T10:00:00.123Z","requestId":"6f0c…","user":"tok-1a2b","userDescription":"ci",
//!  "role":"operator","verb":"patch","apiGroup":"management.project-flotta.io","resource":"edgedevices",
//!  "namespace":"default","name":"cam-1","code":200,"outcome":"allowed"}
//! ```
//!
//! The sink is a file, rotated by size (`PATH` → `PATH.1` → … → `PATH.N`, the
//! oldest dropped), or standard output. A write failure is logged and counted; it
//! never fails the request.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use flotta_core::rbac::{RequestAttributes, ResourceAttributes};
use serde::Serialize;
use time::OffsetDateTime;

use super::ApiState;
use super::auth::{Caller, Identity};

/// Header carrying the request id: taken from the request when it is a sensible
/// one, else generated; always echoed on the response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest request id taken from a client.
const MAX_REQUEST_ID: usize = 128;

/// Where audit records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditSink {
    /// Standard output, one line per record.
    Stdout,
    /// A file, rotated when it would grow past `max_bytes`, keeping `keep` rotated
    /// files beside it.
    File {
        /// The current file.
        path: PathBuf,
        /// Size at which the file is rotated.
        max_bytes: u64,
        /// Rotated files kept (`PATH.1` … `PATH.keep`).
        keep: u32,
    },
}

/// Settings of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// Where records go.
    pub sink: AuditSink,
    /// Whether reads of secrets (get, list, watch) are recorded too.
    pub secret_reads: bool,
}

/// Default size at which the audit file is rotated.
pub const DEFAULT_MAX_BYTES: u64 = 100 * 1024 * 1024;
/// Default number of rotated audit files kept.
pub const DEFAULT_KEEP: u32 = 5;

/// One audited request.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// When the answer was sent, RFC 3339 with milliseconds.
    pub time: String,
    /// The request id (also in the response's `x-request-id`).
    pub request_id: String,
    /// Token id of the caller, or `ISSUER#SUBJECT` for an OIDC user; `None` when no
    /// valid token was presented.
    pub user: Option<String>,
    /// The user RBAC saw: the token's name, or the OIDC user name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// The groups RBAC saw.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The token's description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_description: Option<String>,
    /// The token's role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Kubernetes verb: create, update, patch, delete, get, list, watch.
    pub verb: String,
    /// API group (`""` for the core group of `/api/v1`).
    pub api_group: String,
    /// Resource plural, with the subresource after a slash (`edgedevices/status`).
    pub resource: String,
    /// Namespace, for namespaced paths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Object name, when the path names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// HTTP status of the answer.
    pub code: u16,
    /// `allowed` (2xx/3xx), `denied` (401, 403) or `failed` (any other error).
    pub outcome: &'static str,
}

/// What a request's path names, read by the same rules RBAC reads it with
/// ([`flotta_core::rbac::request::attributes`]); `None` for paths outside the
/// resource API.
fn target(method: &Method, path: &str, query: Option<&str>) -> Option<ResourceAttributes> {
    match flotta_core::rbac::request::attributes(method.as_str(), path, query) {
        RequestAttributes::Resource(target) => Some(target),
        RequestAttributes::NonResource { .. } => None,
    }
}

/// The audit log's writer.
#[derive(Debug)]
pub struct AuditLog {
    config: AuditConfig,
    file: Mutex<Option<(File, u64)>>,
    write_failures: AtomicU64,
}

impl AuditLog {
    /// Opens the log; the file (and its directory) is created when missing.
    pub fn open(config: AuditConfig) -> std::io::Result<Self> {
        let file = match &config.sink {
            AuditSink::Stdout => None,
            AuditSink::File { path, .. } => Some(open_append(path)?),
        };
        Ok(Self {
            config,
            file: Mutex::new(file),
            write_failures: AtomicU64::new(0),
        })
    }

    /// Records that failed to be written since start.
    pub fn write_failures(&self) -> u64 {
        self.write_failures.load(Ordering::Relaxed)
    }

    fn write(&self, record: &AuditRecord) {
        let mut line = match serde_json::to_vec(record) {
            Ok(line) => line,
            Err(error) => {
                tracing::error!(%error, "audit record not serialisable");
                return;
            }
        };
        line.push(b'\n');
        let result = match &self.config.sink {
            AuditSink::Stdout => std::io::stdout().lock().write_all(&line),
            AuditSink::File {
                path,
                max_bytes,
                keep,
            } => self.write_file(path, *max_bytes, *keep, &line),
        };
        if let Err(error) = result {
            self.write_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%error, request_id = %record.request_id, "audit record not written");
        }
    }

    fn write_file(
        &self,
        path: &Path,
        max_bytes: u64,
        keep: u32,
        line: &[u8],
    ) -> std::io::Result<()> {
        let mut guard = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let len = line.len() as u64;
        let full = guard
            .as_ref()
            .is_some_and(|(_, size)| *size > 0 && size.saturating_add(len) > max_bytes);
        if full || guard.is_none() {
            *guard = None;
            if full {
                rotate(path, keep)?;
            }
            *guard = Some(open_append(path)?);
        }
        let Some((file, size)) = guard.as_mut() else {
            return Ok(());
        };
        file.write_all(line)?;
        *size += len;
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<(File, u64)> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

/// `PATH.{keep-1}` → `PATH.{keep}`, …, `PATH` → `PATH.1`; the oldest is replaced.
fn rotate(path: &Path, keep: u32) -> std::io::Result<()> {
    let numbered = |n: u32| {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    };
    if keep == 0 {
        return std::fs::remove_file(path);
    }
    for n in (1..keep).rev() {
        let from = numbered(n);
        if from.exists() {
            std::fs::rename(&from, numbered(n + 1))?;
        }
    }
    std::fs::rename(path, numbered(1))
}

/// A request id from the client, when it is short printable ASCII.
fn client_request_id(value: Option<&HeaderValue>) -> Option<String> {
    let text = value?.to_str().ok()?;
    (!text.is_empty() && text.len() <= MAX_REQUEST_ID && text.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| text.to_owned())
}

/// Middleware: gives every request an id and records the audited ones once
/// answered (outside authentication, so refusals are recorded too).
pub(crate) async fn record(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let request_id = client_request_id(request.headers().get(REQUEST_ID_HEADER))
        .unwrap_or_else(|| uuid::Uuid::new_v4().hyphenated().to_string());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let Some(log) = state.audit.as_deref() else {
        return response;
    };
    let Some(target) = target(&method, &path, query.as_deref()) else {
        return response;
    };
    let mutating = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let reads_secrets = !mutating
        && target.api_group.is_empty()
        && target.resource == crate::store::ResourceKind::Secret.plural();
    if !(mutating || (log.config.secret_reads && reads_secrets)) {
        return response;
    }
    let caller = response.extensions().get::<Caller>();
    let token = caller.and_then(Caller::api_token);
    let user = caller.map(Caller::user);
    let code = response.status().as_u16();
    let record = AuditRecord {
        time: flotta_core::timestamp::rfc3339(OffsetDateTime::now_utc()),
        request_id,
        user: caller.map(|c| match c.identity() {
            Identity::Token(token) => token.id.clone(),
            Identity::Oidc(verified) => format!("{}#{}", verified.issuer, verified.subject),
        }),
        user_name: user.as_ref().map(|u| u.name.clone()),
        groups: user.map(|u| u.groups).unwrap_or_default(),
        user_description: token.map(|t| t.description.clone()),
        role: token.and_then(|t| t.role).map(|r| r.to_string()),
        resource: target.combined_resource(),
        verb: target.verb,
        api_group: target.api_group,
        namespace: Some(target.namespace).filter(|n| !n.is_empty()),
        name: Some(target.name).filter(|n| !n.is_empty()),
        code,
        outcome: match code {
            401 | 403 => "denied",
            400.. => "failed",
            _ => "allowed",
        },
    };
    log.write(&record);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_group_resource_namespace_and_object() {
        let t = target(
            &Method::PATCH,
            "/apis/management.project-flotta.io/v1alpha1/namespaces/lab/edgedevices/cam-1/status",
            None,
        )
        .expect("target");
        assert_eq!(
            (
                t.api_group.as_str(),
                t.combined_resource().as_str(),
                t.namespace.as_str(),
                t.name.as_str(),
                t.verb.as_str()
            ),
            (
                "management.project-flotta.io",
                "edgedevices/status",
                "lab",
                "cam-1",
                "patch"
            )
        );
        let t = target(
            &Method::GET,
            "/api/v1/secrets",
            Some("watch=true&labelSelector=a"),
        )
        .expect("target");
        assert_eq!(
            (
                t.api_group.as_str(),
                t.resource.as_str(),
                t.name.as_str(),
                t.verb.as_str()
            ),
            ("", "secrets", "", "watch")
        );
        assert_eq!(target(&Method::GET, "/healthz", None), None);
        assert_eq!(target(&Method::GET, "/ui/app.js", None), None);
    }

    #[test]
    fn the_file_rotates_and_keeps_the_newest() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("audit/audit.log");
        let log = AuditLog::open(AuditConfig {
            sink: AuditSink::File {
                path: path.clone(),
                max_bytes: 300,
                keep: 2,
            },
            secret_reads: false,
        })
        .expect("open");
        for n in 0..10 {
            log.write(&AuditRecord {
                time: "t".into(),
                request_id: format!("r{n}"),
                user: None,
                user_name: None,
                groups: Vec::new(),
                user_description: None,
                role: None,
                verb: "create".into(),
                api_group: String::new(),
                resource: "secrets".into(),
                namespace: None,
                name: None,
                code: 201,
                outcome: "allowed",
            });
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let current = read(&path);
        let mut rotated_1 = path.as_os_str().to_owned();
        rotated_1.push(".1");
        let mut rotated_3 = path.as_os_str().to_owned();
        rotated_3.push(".3");
        assert!(current.contains("\"r9\""), "{current}");
        assert!(current.len() <= 300);
        assert!(!read(Path::new(&rotated_1)).is_empty());
        assert!(
            !Path::new(&rotated_3).exists(),
            "only two rotated files kept"
        );
        assert_eq!(log.write_failures(), 0);
    }
}
