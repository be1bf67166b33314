//! GitOps: what a `ResourceSync` does with the files of one commit.
//!
//! The server fetches the repository and reads the commit's files; everything it
//! then decides is here, as functions of their inputs:
//!
//! - which files of the commit the sync reads ([`files_under`]);
//! - the objects those files define, each checked with the model's validation, in
//!   the sync's namespace and labelled as owned by the sync ([`read_commit`]); one
//!   bad document fails the whole commit, naming the file and the document index,
//!   so that nothing of a broken commit is applied;
//! - which objects the sync owns that the commit no longer defines ([`to_prune`]);
//!   objects without the owner label are never touched;
//! - the sync's status and conditions after an attempt ([`sync_status`]);
//! - the poll interval ([`poll_interval`]) and whether a webhook call carries the
//!   shared secret ([`webhook_authorized`]).
//!
//! ```
//! use flotta_core::gitops::{files_under, read_commit};
//!
//! let listing = ["fleet/app.yaml".to_owned(), "README.md".to_owned()];
//! let files = files_under("/fleet", &listing).unwrap();
//! assert_eq!(files, ["fleet/app.yaml"]);
//! let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: site}\ndata: {zone: a}\n";
//! let objects = read_commit("team-a", "fleet", &[("fleet/app.yaml".into(), text.into())]).unwrap();
//! assert_eq!(objects[0].name, "site");
//! assert_eq!(objects[0].body["metadata"]["labels"]["management.project-flotta.io/resourcesync"], "fleet");
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::kind::ResourceKind;
use crate::manifest::{AnyResource, MAX_MANIFEST_BYTES, documents};
use crate::model::{
    Condition, Repository, Resource as _, ResourceSync, ResourceSyncStatus, SyncedResource, Time,
};
use crate::rbac::request::{RequestAttributes, ResourceAttributes};
use crate::validation::{FieldError, Validate, dns1123_label, dns1123_subdomain};

/// Label naming the `ResourceSync` that owns an object: the sync updates and prunes
/// only the objects carrying its name here.
pub const OWNER_LABEL: &str = "management.project-flotta.io/resourcesync";

/// Annotation a webhook call sets on a `ResourceSync` (a fresh value each time): the
/// replica running syncs sees the change and syncs at once.
pub const SYNC_REQUESTED_ANNOTATION: &str = "management.project-flotta.io/sync-requested";

/// Key of the webhook's shared secret in the Secret `spec.webhookSecretRef` names.
pub const WEBHOOK_TOKEN_KEY: &str = "token";

/// Keys of a repository's credentials in the Secret `spec.secretRef` names: a bearer
/// token, or a user name and password (HTTP basic), or an SSH private key with the
/// server's known hosts; `ca.crt` adds a CA for HTTPS.
pub mod credential_keys {
    /// Bearer token for HTTPS (`Authorization: Bearer`).
    pub const TOKEN: &str = "token";
    /// User name for HTTP basic authentication.
    pub const USERNAME: &str = "username";
    /// Password (or personal access token) for HTTP basic authentication.
    pub const PASSWORD: &str = "password";
    /// PEM CA certificate(s) the HTTPS server is checked against.
    pub const CA: &str = "ca.crt";
    /// OpenSSH private key (unencrypted) for `ssh://` URLs.
    pub const SSH_PRIVATE_KEY: &str = "ssh-privatekey";
    /// `known_hosts` lines the SSH server's key must match.
    pub const KNOWN_HOSTS: &str = "known_hosts";
}

/// What a sync does with the objects it applies, on its writer's behalf.
pub const DELEGATED_VERBS: [&str; 3] = ["create", "update", "delete"];

/// What else `request` must be allowed, besides itself: writing a `ResourceSync`
/// (create, update, patch) has the server create, update and delete every
/// [`SYNCABLE`] kind in its namespace on the writer's behalf, and writing a
/// `Repository` has it read a Secret of the namespace and send its credentials to
/// the URL the writer chose; so the writer must be allowed those itself (no
/// escalation through GitOps, as Kubernetes asks of whoever binds a role). Empty
/// for every other request.
pub fn delegated_requests(request: &RequestAttributes) -> Vec<ResourceAttributes> {
    let RequestAttributes::Resource(request) = request else {
        return Vec::new();
    };
    let writes = matches!(request.verb.as_str(), "create" | "update" | "patch");
    if !writes
        || !request.subresource.is_empty()
        || request.api_group != ResourceKind::ResourceSync.info().group
    {
        return Vec::new();
    }
    let on = |kind: ResourceKind, verb: &str| ResourceAttributes {
        verb: verb.to_owned(),
        api_group: kind.info().group.to_owned(),
        resource: kind.plural().to_owned(),
        subresource: String::new(),
        namespace: request.namespace.clone(),
        name: String::new(),
    };
    if request.resource == ResourceKind::ResourceSync.plural() {
        SYNCABLE
            .iter()
            .flat_map(|kind| DELEGATED_VERBS.iter().map(move |verb| on(*kind, verb)))
            .collect()
    } else if request.resource == ResourceKind::Repository.plural() {
        vec![on(ResourceKind::Secret, "get")]
    } else {
        Vec::new()
    }
}

/// Whether `url` uses the `file` scheme (repositories on the server's own
/// filesystem, which a server accepts only when configured to).
pub fn is_file_url(url: &str) -> bool {
    url.get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("file://"))
}

/// Poll interval when a sync names none.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(300);

/// Shortest poll interval accepted.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Most files one sync reads from a commit.
pub const MAX_FILES: usize = 1000;

/// Most bytes one sync reads from a commit, all files together (64 MiB).
pub const MAX_TOTAL_BYTES: usize = 64 * 1024 * 1024;

/// The kinds a sync may define. Devices come from enrolment, signed requests from
/// devices and events from the server; RBAC objects and syncs themselves would let
/// a repository widen its own rights, so they are refused too.
pub const SYNCABLE: [ResourceKind; 4] = [
    ResourceKind::EdgeWorkload,
    ResourceKind::EdgeDeviceSet,
    ResourceKind::ConfigMap,
    ResourceKind::Secret,
];

/// Extensions of the files a directory path reads.
const MANIFEST_EXTENSIONS: [&str; 3] = [".yaml", ".yml", ".json"];

/// Condition type: the repository could be fetched and the revision found.
pub const ACCESSIBLE: &str = "Accessible";
/// Condition type: every manifest of the commit is valid.
pub const RESOURCE_PARSED: &str = "ResourceParsed";
/// Condition type: every object of the commit was applied.
pub const SYNCED: &str = "Synced";

/// Reads a poll interval: whole numbers with units `h`, `m`, `s` (`30s`, `5m`,
/// `1h30m`); `None` gives [`DEFAULT_POLL_INTERVAL`].
pub fn poll_interval(text: Option<&str>) -> Result<Duration, String> {
    let Some(text) = text else {
        return Ok(DEFAULT_POLL_INTERVAL);
    };
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut any = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            other => {
                return Err(format!(
                    "{text:?} is not a duration: unexpected {other:?} (use h, m and s, e.g. 30s, 5m, 1h30m)"
                ));
            }
        };
        let value: u64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a duration: a number must come before {c:?}"))?;
        number.clear();
        total = value
            .checked_mul(unit)
            .and_then(|seconds| total.checked_add(seconds))
            .ok_or_else(|| format!("{text:?} is too long"))?;
        any = true;
    }
    if !number.is_empty() || !any {
        return Err(format!(
            "{text:?} is not a duration: every number needs a unit (h, m or s, e.g. 30s, 5m)"
        ));
    }
    let interval = Duration::from_secs(total);
    if interval < MIN_POLL_INTERVAL {
        return Err(format!("{text:?} is shorter than the minimum, 1s"));
    }
    Ok(interval)
}

/// Whether the URL's authority holds `user:password@`.
fn url_has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// The schemes a repository URL may use.
const URL_SCHEMES: [&str; 5] = ["https://", "http://", "ssh://", "git://", "file://"];

/// Fields of a GitOps spec this server does not know: refused rather than
/// ignored (Flight Control's inline `httpConfig`/`sshConfig` credentials among them).
fn unknown_spec_fields(
    problems: &mut Vec<FieldError>,
    extra: &crate::model::UnknownFields,
    hint: &str,
) {
    crate::validation::unknown_fields(problems, "spec", extra, hint);
}

impl Validate for Repository {
    fn validate(&self) -> Vec<FieldError> {
        let mut problems = crate::validation::type_and_metadata_problems(
            &self.api_version,
            &self.kind,
            Self::KIND,
            &self.metadata,
        );
        unknown_spec_fields(
            &mut problems,
            &self.spec.extra,
            " (credentials are never inline: put them in a Secret named by spec.secretRef)",
        );
        let mut push = |path: &str, message: String| {
            problems.push(FieldError {
                path: path.to_owned(),
                message,
            })
        };
        let url = &self.spec.url;
        if url.is_empty() {
            push("spec.url", "required".into());
        } else if !URL_SCHEMES.iter().any(|scheme| url.starts_with(scheme)) {
            push(
                "spec.url",
                format!("{url:?} must start with one of {}", URL_SCHEMES.join(", ")),
            );
        } else if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            push(
                "spec.url",
                "must not contain spaces or control characters".into(),
            );
        } else if url_has_password(url) {
            push(
                "spec.url",
                "must not carry a password: put credentials in a Secret and name it in spec.secretRef".into(),
            );
        }
        if self.spec.repo_type != "git" {
            push(
                "spec.type",
                format!(
                    "{:?} is not served: only \"git\" repositories are",
                    self.spec.repo_type
                ),
            );
        }
        if let Some(reference) = &self.spec.secret_ref
            && let Err(problem) = dns1123_subdomain(&reference.name)
        {
            push("spec.secretRef.name", problem);
        }
        problems
    }
}

impl Validate for ResourceSync {
    fn validate(&self) -> Vec<FieldError> {
        let mut problems = crate::validation::type_and_metadata_problems(
            &self.api_version,
            &self.kind,
            Self::KIND,
            &self.metadata,
        );
        unknown_spec_fields(&mut problems, &self.spec.extra, "");
        let mut push = |path: &str, message: String| {
            problems.push(FieldError {
                path: path.to_owned(),
                message,
            })
        };
        if let Some(name) = &self.metadata.name
            && let Err(problem) = dns1123_label(name)
        {
            // The name is the value of the owner label on every object it syncs.
            push(
                "metadata.name",
                format!("{problem} (it is the value of the {OWNER_LABEL} label)"),
            );
        }
        let spec = &self.spec;
        if let Err(problem) = dns1123_subdomain(&spec.repository) {
            push("spec.repository", problem);
        }
        let revision = &spec.target_revision;
        if revision.is_empty() {
            push("spec.targetRevision", "required".into());
        } else if revision.len() > 244 {
            push("spec.targetRevision", "longer than 244 characters".into());
        } else if revision.starts_with('-')
            || revision
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c))
            || revision.contains("..")
        {
            push(
                "spec.targetRevision",
                format!("{revision:?} is not a branch, tag or commit name"),
            );
        }
        if spec.path.len() > 2048 {
            push("spec.path", "longer than 2048 characters".into());
        } else if let Err(problem) = normalize_path(&spec.path) {
            push("spec.path", problem);
        }
        if let Err(problem) = poll_interval(spec.poll_interval.as_deref()) {
            push("spec.pollInterval", problem);
        }
        if let Some(reference) = &spec.webhook_secret_ref
            && let Err(problem) = dns1123_subdomain(&reference.name)
        {
            push("spec.webhookSecretRef.name", problem);
        }
        problems
    }
}

/// The path relative to the repository root, without leading or trailing `/`
/// (empty: the whole repository).
fn normalize_path(path: &str) -> Result<String, String> {
    let trimmed = path.trim_matches('/');
    for segment in trimmed.split('/') {
        if (segment.is_empty() && !trimmed.is_empty()) || segment == "." || segment == ".." {
            return Err(format!(
                "{path:?}: segments must not be empty, \".\" or \"..\""
            ));
        }
    }
    if path.chars().any(char::is_control) {
        return Err(format!("{path:?} holds control characters"));
    }
    Ok(trimmed.to_owned())
}

/// The files of `listing` (every file path of the commit, relative to the root)
/// that `path` names: the file itself, or every manifest (`.yaml`, `.yml`,
/// `.json`) below the directory, sorted.
pub fn files_under<'a>(path: &str, listing: &'a [String]) -> Result<Vec<&'a str>, String> {
    let path = normalize_path(path)?;
    if let Some(file) = listing.iter().find(|file| **file == path) {
        return Ok(vec![file.as_str()]);
    }
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    let mut files: Vec<&str> = listing
        .iter()
        .map(String::as_str)
        .filter(|file| file.starts_with(&prefix))
        .filter(|file| MANIFEST_EXTENSIONS.iter().any(|ext| file.ends_with(ext)))
        .collect();
    if files.is_empty() {
        let shown = if path.is_empty() { "/" } else { &path };
        return Err(format!(
            "path {shown:?} is neither a file nor a directory holding .yaml, .yml or .json files at this revision"
        ));
    }
    if files.len() > MAX_FILES {
        return Err(format!(
            "path {path:?} holds {} manifest files, more than the {MAX_FILES} a sync reads",
            files.len()
        ));
    }
    files.sort_unstable();
    Ok(files)
}

/// One object a commit defines, ready to be applied.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredObject {
    /// Its kind.
    pub kind: ResourceKind,
    /// Its name.
    pub name: String,
    /// The body to create or update with: as written in git, with the namespace
    /// set and the owner label added.
    pub body: Value,
    /// The file that defines it, for messages.
    pub file: String,
}

/// Why a commit cannot be applied: the file, the document (from 0) when known,
/// and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitProblem {
    /// The file, relative to the repository root.
    pub file: String,
    /// The document index within the file, from 0.
    pub document: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for CommitProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.document {
            Some(index) => write!(f, "{} (document {index}): {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// A manifest error's message without its `document N: ` prefix: the problem
/// names the document itself.
fn without_index(error: &crate::manifest::ManifestError) -> String {
    let text = error.to_string();
    match error.document_index() {
        Some(index) => text
            .strip_prefix(&format!("document {index}: "))
            .map_or_else(|| text.clone(), str::to_owned),
        None => text,
    }
}

/// Reads every object the `files` (path and text) define for the sync `sync` in
/// `namespace`, or every problem found. Each object must be of a kind in
/// [`SYNCABLE`], valid, named, in `namespace` (or name none) and defined once.
pub fn read_commit(
    namespace: &str,
    sync: &str,
    files: &[(String, String)],
) -> Result<Vec<DesiredObject>, Vec<CommitProblem>> {
    let mut problems = Vec::new();
    let mut objects = Vec::new();
    let mut seen = BTreeSet::new();
    let total: usize = files.iter().map(|(_, text)| text.len()).sum();
    if total > MAX_TOTAL_BYTES {
        return Err(vec![CommitProblem {
            file: String::new(),
            document: None,
            message: format!(
                "the files hold {total} bytes, more than the {MAX_TOTAL_BYTES} a sync reads"
            ),
        }]);
    }
    for (file, text) in files {
        let mut problem = |document: Option<usize>, message: String| {
            problems.push(CommitProblem {
                file: file.clone(),
                document,
                message,
            })
        };
        if text.len() > MAX_MANIFEST_BYTES {
            problem(
                None,
                format!("larger than {MAX_MANIFEST_BYTES} bytes, the limit of one manifest"),
            );
            continue;
        }
        let docs = match documents(text) {
            Ok(docs) => docs,
            Err(error) => {
                problem(error.document_index(), without_index(&error));
                continue;
            }
        };
        for (index, value) in docs {
            match desired_object(namespace, sync, index, value) {
                Ok(object) => {
                    if !seen.insert((object.kind, object.name.clone())) {
                        problem(
                            Some(index),
                            format!(
                                "{} {:?} is defined more than once",
                                object.kind, object.name
                            ),
                        );
                        continue;
                    }
                    objects.push(DesiredObject {
                        file: file.clone(),
                        ..object
                    });
                }
                Err(message) => problem(Some(index), message),
            }
        }
    }
    if problems.is_empty() {
        Ok(objects)
    } else {
        Err(problems)
    }
}

fn desired_object(
    namespace: &str,
    sync: &str,
    index: usize,
    mut value: Value,
) -> Result<DesiredObject, String> {
    let resource = AnyResource::from_value(index, value.clone()).map_err(|e| without_index(&e))?;
    let kind = ResourceKind::from_kind(resource.kind())
        .filter(|kind| SYNCABLE.contains(kind))
        .ok_or_else(|| {
            format!(
                "kind {} cannot be synced from git (allowed: {})",
                resource.kind(),
                SYNCABLE.map(ResourceKind::as_str).join(", ")
            )
        })?;
    let problems = resource.validate();
    if let Some(first) = problems.first() {
        return Err(format!(
            "{}: {}{}",
            first.path,
            first.message,
            if problems.len() > 1 {
                format!(" (and {} more problems)", problems.len() - 1)
            } else {
                String::new()
            }
        ));
    }
    let metadata = resource.metadata();
    let name = metadata
        .name
        .clone()
        .filter(|name| !name.is_empty())
        .ok_or_else(|| "metadata.name: required".to_owned())?;
    if metadata.generate_name.is_some() {
        return Err(
            "metadata.generateName: not allowed: a synced object needs a fixed name".into(),
        );
    }
    match metadata.namespace.as_deref() {
        None => {}
        Some(ns) if ns == namespace => {}
        Some(other) => {
            return Err(format!(
                "metadata.namespace: {other:?}: a sync applies only to its own namespace, {namespace:?}"
            ));
        }
    }
    if let Some(owner) = metadata.labels.as_ref().and_then(|l| l.get(OWNER_LABEL))
        && owner != sync
    {
        return Err(format!(
            "metadata.labels.{OWNER_LABEL}: {owner:?} names another sync than {sync:?}"
        ));
    }
    let Some(object) = value.as_object_mut() else {
        return Err("not an object".into());
    };
    // Server-managed fields from an exported object mean nothing here.
    object.remove("status");
    let metadata = object
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(metadata) = metadata.as_object_mut() {
        for field in [
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "managedFields",
        ] {
            metadata.remove(field);
        }
        metadata.insert("namespace".into(), Value::String(namespace.to_owned()));
        let labels = metadata
            .entry("labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if !labels.is_object() {
            *labels = Value::Object(Map::new());
        }
        if let Some(labels) = labels.as_object_mut() {
            labels.insert(OWNER_LABEL.into(), Value::String(sync.to_owned()));
        }
    }
    Ok(DesiredObject {
        kind,
        name,
        body: value,
        file: String::new(),
    })
}

/// The objects the sync owns now (`owned`: kind and name of every object carrying
/// its owner label) that `desired` no longer defines: the ones to delete.
pub fn to_prune(
    desired: &[DesiredObject],
    owned: &[(ResourceKind, String)],
) -> Vec<(ResourceKind, String)> {
    let wanted: BTreeSet<(ResourceKind, &str)> = desired
        .iter()
        .map(|object| (object.kind, object.name.as_str()))
        .collect();
    owned
        .iter()
        .filter(|(kind, name)| !wanted.contains(&(*kind, name.as_str())))
        .cloned()
        .collect()
}

/// Whether an existing object may be written by the sync `sync`: only objects
/// carrying its owner label.
pub fn owned_by(existing: &Value, sync: &str) -> bool {
    existing
        .pointer("/metadata/labels")
        .and_then(|labels| labels.get(OWNER_LABEL))
        .and_then(Value::as_str)
        == Some(sync)
}

/// The body a sync writes over `existing`: what git defines, with the labels and
/// annotations of `existing` that git does not name kept (an operator's rollout
/// annotations, a label set by hand), so that only git's fields are enforced.
pub fn merged_over(desired: &Value, existing: &Value) -> Value {
    let mut merged = desired.clone();
    for field in ["labels", "annotations"] {
        let Some(kept) = existing
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_object)
        else {
            continue;
        };
        let Some(metadata) = merged.get_mut("metadata").and_then(Value::as_object_mut) else {
            continue;
        };
        let entry = metadata
            .entry(field)
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(map) = entry.as_object_mut() {
            for (key, value) in kept {
                map.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
    }
    merged
}

/// Whether `desired` would change `existing`: compares what git defines (every
/// top-level field but `metadata` and `status`, and the labels and annotations).
pub fn differs(desired: &Value, existing: &Value) -> bool {
    fn content(value: &Value) -> Map<String, Value> {
        let mut out = Map::new();
        if let Some(object) = value.as_object() {
            for (key, field) in object {
                if key != "metadata" && key != "status" && key != "apiVersion" && key != "kind" {
                    out.insert(key.clone(), field.clone());
                }
            }
        }
        for field in ["labels", "annotations"] {
            let shown = value
                .pointer(&format!("/metadata/{field}"))
                .cloned()
                .filter(|v| v.as_object().is_some_and(|m| !m.is_empty()))
                .unwrap_or(Value::Null);
            out.insert(format!("metadata.{field}"), shown);
        }
        out
    }
    content(desired) != content(existing)
}

/// What one attempt of a sync found.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncReport {
    /// The repository could not be fetched or the revision not found; nothing was
    /// applied.
    Unreachable {
        /// Why.
        message: String,
    },
    /// The commit's manifests are not all valid; nothing of it was applied.
    Unparsable {
        /// The commit read.
        commit: String,
        /// Every problem, each naming its file and document.
        problems: Vec<CommitProblem>,
    },
    /// The commit was applied; each object's outcome.
    Applied {
        /// The commit applied.
        commit: String,
        /// What happened to each object, pruned ones included.
        resources: Vec<SyncedResource>,
    },
}

/// The sync's status after `report`, from its `previous` status: the observed
/// commit moves only when a commit was applied, and a condition's transition time
/// only when its status changes.
pub fn sync_status(
    previous: Option<&ResourceSyncStatus>,
    generation: Option<i64>,
    report: &SyncReport,
    now: &Time,
) -> ResourceSyncStatus {
    let mut status = previous.cloned().unwrap_or_default();
    status.last_sync_time = Some(
        jiff::Timestamp::from_second(now.0.as_second())
            .unwrap_or(now.0)
            .to_string(),
    );
    let (accessible, parsed, synced) = match report {
        SyncReport::Unreachable { message } => (
            ("False", "FetchFailed", message.clone()),
            None,
            Some((
                "False",
                "FetchFailed",
                "the repository could not be read".to_owned(),
            )),
        ),
        SyncReport::Unparsable { commit, problems } => {
            let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
            (
                ("True", "Fetched", format!("commit {commit}")),
                Some(("False", "Invalid", listed.join("; "))),
                Some((
                    "False",
                    "Invalid",
                    format!("nothing of commit {commit} was applied"),
                )),
            )
        }
        SyncReport::Applied { commit, resources } => {
            let failed: Vec<String> = resources
                .iter()
                .filter(|r| r.outcome == "failed")
                .map(|r| {
                    format!(
                        "{} {}: {}",
                        r.kind,
                        r.name,
                        r.message.as_deref().unwrap_or("failed")
                    )
                })
                .collect();
            status.observed_commit = Some(commit.clone());
            status.observed_generation = generation;
            status.resources = resources.clone();
            (
                ("True", "Fetched", format!("commit {commit}")),
                Some((
                    "True",
                    "Valid",
                    format!("every manifest of commit {commit} is valid"),
                )),
                Some(if failed.is_empty() {
                    ("True", "Applied", format!("commit {commit} applied"))
                } else {
                    ("False", "ApplyFailed", failed.join("; "))
                }),
            )
        }
    };
    set_condition(&mut status.conditions, ACCESSIBLE, accessible, now);
    if let Some(parsed) = parsed {
        set_condition(&mut status.conditions, RESOURCE_PARSED, parsed, now);
    }
    if let Some(synced) = synced {
        set_condition(&mut status.conditions, SYNCED, synced, now);
    }
    status
}

/// The repository's `Accessible` condition after a fetch.
pub fn repository_conditions(
    previous: &[Condition],
    fetched: Result<(), &str>,
    now: &Time,
) -> Vec<Condition> {
    let mut conditions = previous.to_vec();
    let value = match fetched {
        Ok(()) => ("True", "Fetched", "the repository was fetched".to_owned()),
        Err(message) => ("False", "FetchFailed", message.to_owned()),
    };
    set_condition(&mut conditions, ACCESSIBLE, value, now);
    conditions
}

fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    (status, reason, message): (&str, &str, String),
    now: &Time,
) {
    let since = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time: since,
        observed_generation: None,
    });
    conditions.sort_by_key(|c| match c.type_.as_str() {
        ACCESSIBLE => 0,
        RESOURCE_PARSED => 1,
        _ => 2,
    });
}

/// Whether a webhook call carries the shared `secret`: either as the token header
/// (`X-Flotta-Webhook-Token` or GitLab's `X-Gitlab-Token`) or as an HMAC-SHA256 of
/// the `body` (`X-Hub-Signature-256: sha256=HEX`, as GitHub and Gitea send).
/// Compared in constant time.
pub fn webhook_authorized(
    secret: &[u8],
    token: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> bool {
    if secret.is_empty() {
        return false;
    }
    if let Some(token) = token
        && constant_time_eq(token.as_bytes(), secret)
    {
        return true;
    }
    let Some(hex) = signature.and_then(|s| s.strip_prefix("sha256=")) else {
        return false;
    };
    let expected = hmac_sha256(secret, body);
    let expected_hex: String = expected.iter().map(|b| format!("{b:02x}")).collect();
    constant_time_eq(hex.to_ascii_lowercase().as_bytes(), expected_hex.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

#[cfg(test)]
mod tests;
