//! GitOps: `ResourceSync`s apply the manifests of a git repository's path to
//! their namespace.
//!
//! One background task, run only by the replica holding the leader lease
//! ([`crate::leader`]), so that one replica syncs at a time. Each sync runs when it
//! is new, when its spec or its repository's spec changes, when a webhook asks for
//! it ([`SYNC_REQUESTED_ANNOTATION`], set by `POST /webhooks/resourcesyncs/...`),
//! and otherwise every `spec.pollInterval`. A run fetches the repository into a
//! bare mirror under `DATA_DIR/gitops` ([`git`]), resolves `targetRevision`, reads
//! the manifests under `spec.path` and hands them to core
//! ([`flotta_core::gitops::read_commit`]): a commit with any invalid manifest is
//! not applied at all. Otherwise every object goes through the API's own checks
//! (`api::prepare_write`) and is created or updated, only where the sync
//! owns it (its [`OWNER_LABEL`]); owned objects git no longer defines are deleted.
//! The outcome is written to the sync's status and the repository's `Accessible`
//! condition.

pub mod git;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use flotta_core::gitops::{
    CommitProblem, DEFAULT_POLL_INTERVAL, MAX_FILES, MAX_TOTAL_BYTES, OWNER_LABEL,
    SYNC_REQUESTED_ANNOTATION, SYNCABLE, SyncReport, credential_keys, differs, files_under,
    is_file_url, merged_over, poll_interval, read_commit, repository_conditions, sync_status,
    to_prune,
};
use flotta_core::model::{Repository, ResourceSync, SyncedResource, Time};
use futures::StreamExt;
use serde_json::Value;
use sha2::Digest as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::leader::Leadership;
use crate::store::{ResourceKind, Store, StoreError, StoredObject, WatchStream, list_all};

use self::git::{Credentials, Mirror};

/// Folder of the data directory holding the repository mirrors.
pub const MIRRORS_DIR: &str = "gitops";

/// Field manager recorded in `managedFields` for what a sync writes.
pub const FIELD_MANAGER: &str = "flotta-gitops";

/// How often the task looks for syncs that are due (besides store changes).
const CHECK_PERIOD: Duration = Duration::from_secs(1);

/// What the GitOps task needs besides the store.
#[derive(Debug, Clone)]
pub struct GitOpsConfig {
    /// Where mirrors live: `DATA_DIR/gitops`.
    pub mirrors: PathBuf,
    /// Whether `file://` repositories are served.
    pub allow_file_repositories: bool,
}

/// What the task remembers of a sync's last run, to know when the next is due.
struct LastRun {
    at: Instant,
    generation: u64,
    requested: Option<String>,
    repository_generation: Option<u64>,
}

/// Starts the task; it ends when `shutdown` turns true.
pub async fn spawn(
    store: Arc<dyn Store>,
    config: GitOpsConfig,
    mut leadership: Leadership,
    mut shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, StoreError> {
    let mut stream = open_watches(store.as_ref()).await?;
    Ok(tokio::spawn(async move {
        let mut last_runs: HashMap<(String, String), LastRun> = HashMap::new();
        let mut check = tokio::time::interval(CHECK_PERIOD);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                next = stream.next() => {
                    if !matches!(next, Some(Ok(_)))
                        && let Ok(reopened) = open_watches(store.as_ref()).await
                    {
                        stream = reopened;
                    }
                }
                _ = check.tick() => {}
                () = leadership.taken() => last_runs.clear(),
                () = crate::shutdown::stopping(&mut shutdown) => return,
            }
            if !leadership.is_leader() {
                // The leader syncs; should this replica take over, it syncs
                // everything at once.
                last_runs.clear();
                continue;
            }
            if let Err(error) = run_due(store.as_ref(), &config, &leadership, &mut last_runs).await
            {
                tracing::warn!(error = %crate::api::error_chain(&error), "gitops: cannot list resource syncs");
            }
        }
    }))
}

async fn open_watches(store: &dyn Store) -> Result<WatchStream, StoreError> {
    let from = store.current_resource_version().await?;
    let syncs = store.watch(ResourceKind::ResourceSync, None, from).await?;
    let repositories = store.watch(ResourceKind::Repository, None, from).await?;
    Ok(crate::store::pumped(
        futures::stream::select_all([syncs, repositories]).boxed(),
    ))
}

/// Runs every sync that is due, one after the other.
async fn run_due(
    store: &dyn Store,
    config: &GitOpsConfig,
    leadership: &Leadership,
    last_runs: &mut HashMap<(String, String), LastRun>,
) -> Result<(), StoreError> {
    let syncs = list_all(store, ResourceKind::ResourceSync, None).await?;
    let repositories: BTreeMap<(String, String), StoredObject> =
        list_all(store, ResourceKind::Repository, None)
            .await?
            .into_iter()
            .map(|object| ((object.namespace.clone(), object.name.clone()), object))
            .collect();
    last_runs.retain(|key, _| {
        syncs
            .iter()
            .any(|sync| sync.namespace == key.0 && sync.name == key.1)
    });
    for stored in syncs {
        if stored.deletion_timestamp.is_some() {
            continue;
        }
        let sync: ResourceSync = match stored.to_resource() {
            Ok(sync) => sync,
            Err(error) => {
                tracing::warn!(namespace = %stored.namespace, name = %stored.name, %error, "gitops: unreadable resource sync");
                continue;
            }
        };
        let key = (stored.namespace.clone(), stored.name.clone());
        let repository =
            repositories.get(&(stored.namespace.clone(), sync.spec.repository.clone()));
        let requested = sync
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SYNC_REQUESTED_ANNOTATION))
            .cloned();
        let interval =
            poll_interval(sync.spec.poll_interval.as_deref()).unwrap_or(DEFAULT_POLL_INTERVAL);
        let due = last_runs.get(&key).is_none_or(|last| {
            last.generation != stored.generation
                || last.requested != requested
                || last.repository_generation != repository.map(|r| r.generation)
                || last.at.elapsed() >= interval
        });
        if !due {
            continue;
        }
        if !leadership.is_leader() {
            return Ok(());
        }
        last_runs.insert(
            key,
            LastRun {
                at: Instant::now(),
                generation: stored.generation,
                requested,
                repository_generation: repository.map(|r| r.generation),
            },
        );
        let (report, fetched) = run_one(store, config, &stored, &sync, repository).await;
        write_status(store, &stored, &sync, &report).await;
        if let (Some(repository), Some(fetched)) = (repository, fetched) {
            write_repository_status(
                store,
                repository,
                fetched.as_ref().err().map(String::as_str),
            )
            .await;
        }
    }
    Ok(())
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// One run of `sync`: the report, and the outcome of the fetch when one was tried.
async fn run_one(
    store: &dyn Store,
    config: &GitOpsConfig,
    stored: &StoredObject,
    sync: &ResourceSync,
    repository: Option<&StoredObject>,
) -> (SyncReport, Option<Result<(), String>>) {
    let namespace = stored.namespace.as_str();
    let unreachable = |message: String| SyncReport::Unreachable { message };
    let Some(repository) = repository else {
        return (
            unreachable(format!(
                "Repository {:?} does not exist in namespace {namespace:?}",
                sync.spec.repository
            )),
            None,
        );
    };
    let repo: Repository = match repository.to_resource() {
        Ok(repo) => repo,
        Err(error) => return (unreachable(error.to_string()), None),
    };
    if is_file_url(&repo.spec.url) && !config.allow_file_repositories {
        let message = "file:// repositories are not enabled on this server \
                       (flotta-server --gitops-file-repositories true)"
            .to_owned();
        return (unreachable(message.clone()), Some(Err(message)));
    }
    let credentials = match credentials(store, namespace, &repo).await {
        Ok(credentials) => credentials,
        Err(message) => return (unreachable(message.clone()), Some(Err(message))),
    };
    let mirror_dir = config
        .mirrors
        .join(namespace)
        .join(mirror_name(&repository.name, &repo.spec.url));
    let mirror = match Mirror::new(mirror_dir, &config.mirrors, credentials) {
        Ok(mirror) => mirror,
        Err(message) => return (unreachable(message), None),
    };
    if let Err(message) = mirror.fetch(&repo.spec.url).await {
        return (unreachable(message.clone()), Some(Err(message)));
    }
    let fetched = Some(Ok(()));
    let commit = match mirror.resolve(&sync.spec.target_revision).await {
        Ok(commit) => commit,
        Err(message) => return (unreachable(message), fetched),
    };
    let report = match read_files(&mirror, &commit, &sync.spec.path).await {
        Err(problems) => SyncReport::Unparsable { commit, problems },
        Ok(files) => match read_commit(namespace, &stored.name, &files) {
            Err(problems) => SyncReport::Unparsable { commit, problems },
            Ok(desired) => {
                let resources = apply(store, namespace, &stored.name, desired).await;
                SyncReport::Applied { commit, resources }
            }
        },
    };
    (report, fetched)
}

/// The mirror's folder name: the repository's name and a digest of its URL, so
/// that a changed URL starts a new mirror.
fn mirror_name(repository: &str, url: &str) -> String {
    let digest = sha2::Sha256::digest(url.as_bytes());
    let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{repository}-{short}.git")
}

/// The manifests `path` names at `commit`, as (path, text).
async fn read_files(
    mirror: &Mirror,
    commit: &str,
    path: &str,
) -> Result<Vec<(String, String)>, Vec<CommitProblem>> {
    let problem = |file: &str, message: String| {
        vec![CommitProblem {
            file: file.to_owned(),
            document: None,
            message,
        }]
    };
    let tree = mirror.files(commit).await.map_err(|m| problem(path, m))?;
    let names: Vec<String> = tree.iter().map(|f| f.path.clone()).collect();
    let chosen = files_under(path, &names).map_err(|m| problem(path, m))?;
    let blobs: Vec<&git::TreeFile> = tree
        .iter()
        .filter(|file| chosen.contains(&file.path.as_str()))
        .take(MAX_FILES + 1)
        .collect();
    let total: u64 = blobs.iter().map(|b| b.size).sum();
    if total > MAX_TOTAL_BYTES as u64 {
        return Err(problem(
            path,
            format!(
                "the manifests hold {total} bytes, more than the {MAX_TOTAL_BYTES} a sync reads"
            ),
        ));
    }
    let contents = mirror.read(&blobs).await.map_err(|m| problem(path, m))?;
    let mut files = Vec::with_capacity(blobs.len());
    let mut problems = Vec::new();
    for (blob, bytes) in blobs.iter().zip(contents) {
        match String::from_utf8(bytes) {
            Ok(text) => files.push((blob.path.clone(), text)),
            Err(_) => problems.extend(problem(&blob.path, "is not UTF-8 text".into())),
        }
    }
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(problems)
    }
}

/// The credentials the repository's `spec.secretRef` names.
async fn credentials(
    store: &dyn Store,
    namespace: &str,
    repo: &Repository,
) -> Result<Credentials, String> {
    let Some(reference) = &repo.spec.secret_ref else {
        return Ok(Credentials::default());
    };
    let shown = format!("Secret {:?} (spec.secretRef)", reference.name);
    let secret = store
        .get(ResourceKind::Secret, namespace, &reference.name)
        .await
        .map_err(|e| format!("cannot read {shown}: {e}"))?
        .ok_or_else(|| format!("{shown} does not exist in namespace {namespace:?}"))?;
    let value = |key: &str| -> Result<Option<Vec<u8>>, String> {
        match secret.body.pointer(&format!(
            "/data/{}",
            key.replace('~', "~0").replace('/', "~1")
        )) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map(Some)
                .map_err(|_| format!("{shown}: data.{key} is not base64")),
            Some(_) => Err(format!("{shown}: data.{key} is not a string")),
        }
    };
    let text = |key: &str| -> Result<Option<String>, String> {
        value(key)?
            .map(|bytes| {
                String::from_utf8(bytes)
                    .map(|s| s.trim().to_owned())
                    .map_err(|_| format!("{shown}: data.{key} is not UTF-8 text"))
            })
            .transpose()
    };
    let mut credentials = Credentials {
        ca: value(credential_keys::CA)?,
        ..Credentials::default()
    };
    let token = text(credential_keys::TOKEN)?;
    let username = text(credential_keys::USERNAME)?;
    let password = text(credential_keys::PASSWORD)?;
    credentials.authorization = match (token, username, password) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(format!(
                "{shown}: holds both a token and a username/password: keep one"
            ));
        }
        (Some(token), None, None) => Some(Credentials::bearer(&token)),
        (None, Some(user), Some(password)) => Some(Credentials::basic(&user, &password)),
        (None, Some(_), None) | (None, None, Some(_)) => {
            return Err(format!(
                "{shown}: basic authentication needs both data.username and data.password"
            ));
        }
        (None, None, None) => None,
    };
    if let Some(key) = value(credential_keys::SSH_PRIVATE_KEY)? {
        let Some(hosts) = value(credential_keys::KNOWN_HOSTS)? else {
            return Err(format!(
                "{shown}: data.ssh-privatekey needs data.known_hosts (the server's key is always checked)"
            ));
        };
        credentials.ssh = Some((key, hosts));
    }
    if credentials.authorization.is_none() && credentials.ssh.is_none() && credentials.ca.is_none()
    {
        return Err(format!(
            "{shown}: holds none of token, username/password, ssh-privatekey or ca.crt"
        ));
    }
    Ok(credentials)
}

/// Applies `desired` to the namespace and prunes what the sync owns beyond it.
async fn apply(
    store: &dyn Store,
    namespace: &str,
    sync: &str,
    desired: Vec<flotta_core::gitops::DesiredObject>,
) -> Vec<SyncedResource> {
    let mut outcomes = Vec::with_capacity(desired.len());
    let outcome =
        |kind: ResourceKind, name: &str, outcome: &str, message: Option<String>| SyncedResource {
            kind: kind.as_str().to_owned(),
            name: name.to_owned(),
            outcome: outcome.to_owned(),
            message,
        };
    for object in &desired {
        let (kind, name) = (object.kind, object.name.as_str());
        let result = apply_one(store, namespace, sync, object).await;
        outcomes.push(match result {
            Ok(done) => outcome(kind, name, done, None),
            Err(message) => {
                tracing::warn!(%namespace, %sync, %kind, %name, %message, "gitops: object not applied");
                outcome(kind, name, "failed", Some(message))
            }
        });
    }
    let mut owned = Vec::new();
    for kind in SYNCABLE {
        match list_all(store, kind, Some(namespace)).await {
            Ok(objects) => owned.extend(
                objects
                    .into_iter()
                    .filter(|o| o.labels.get(OWNER_LABEL).is_some_and(|s| s == sync))
                    .map(|o| (kind, o.name, o.resource_version)),
            ),
            Err(error) => outcomes.push(outcome(
                kind,
                "*",
                "failed",
                Some(format!("cannot list {} to prune: {error}", kind.plural())),
            )),
        }
    }
    let names: Vec<(ResourceKind, String)> =
        owned.iter().map(|(k, n, _)| (*k, n.clone())).collect();
    for (kind, name) in to_prune(&desired, &names) {
        let version = owned
            .iter()
            .find(|(k, n, _)| *k == kind && *n == name)
            .map(|(_, _, v)| *v);
        match store.delete(kind, namespace, &name, version).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => {
                outcomes.push(outcome(kind, &name, "pruned", None));
            }
            Err(error) => outcomes.push(outcome(
                kind,
                &name,
                "failed",
                Some(format!("cannot delete: {error}")),
            )),
        }
    }
    outcomes
}

/// Creates or updates one object; the outcome (`created`, `configured`,
/// `unchanged`) or why it was not applied.
async fn apply_one(
    store: &dyn Store,
    namespace: &str,
    sync: &str,
    object: &flotta_core::gitops::DesiredObject,
) -> Result<&'static str, String> {
    let (kind, name) = (object.kind, object.name.as_str());
    let refused = |error: crate::api::ApiError| error.message;
    let existing = store
        .get(kind, namespace, name)
        .await
        .map_err(|e| e.to_string())?;
    match existing {
        None => {
            let mut body = object.body.clone();
            crate::api::prepare_write(kind, namespace, None, &mut body, FIELD_MANAGER)
                .map_err(refused)?;
            store
                .create(kind, namespace, name, body)
                .await
                .map_err(|e| e.to_string())?;
            Ok("created")
        }
        Some(current) => {
            if current.labels.get(OWNER_LABEL).map(String::as_str) != Some(sync) {
                return Err(format!(
                    "{kind} {name:?} exists and is not managed by this ResourceSync \
                     (label {OWNER_LABEL}); delete it or give it that label to hand it over"
                ));
            }
            let mut body = merged_over(&object.body, &current.body);
            if !differs(&body, &current.body) {
                return Ok("unchanged");
            }
            crate::api::prepare_write(
                kind,
                namespace,
                Some(&current.body),
                &mut body,
                FIELD_MANAGER,
            )
            .map_err(refused)?;
            store
                .update(kind, namespace, name, Some(current.resource_version), body)
                .await
                .map_err(|e| e.to_string())?;
            Ok("configured")
        }
    }
}

async fn write_status(
    store: &dyn Store,
    stored: &StoredObject,
    sync: &ResourceSync,
    report: &SyncReport,
) {
    match report {
        SyncReport::Unreachable { message } => {
            tracing::warn!(namespace = %stored.namespace, name = %stored.name, %message, "gitops: repository not read");
        }
        SyncReport::Unparsable { commit, problems } => {
            tracing::warn!(namespace = %stored.namespace, name = %stored.name, %commit, problems = problems.len(), "gitops: commit not applied: invalid manifests");
        }
        SyncReport::Applied { commit, resources } => {
            tracing::debug!(namespace = %stored.namespace, name = %stored.name, %commit, objects = resources.len(), "gitops: commit applied");
        }
    }
    let generation = i64::try_from(stored.generation).ok();
    let status = sync_status(sync.status.as_ref(), generation, report, &now());
    let Ok(value) = serde_json::to_value(&status) else {
        return;
    };
    if let Err(error) = store
        .update_status(
            ResourceKind::ResourceSync,
            &stored.namespace,
            &stored.name,
            None,
            value,
        )
        .await
    {
        tracing::warn!(namespace = %stored.namespace, name = %stored.name, %error, "gitops: cannot write the sync's status");
    }
}

async fn write_repository_status(store: &dyn Store, stored: &StoredObject, failure: Option<&str>) {
    let Ok(repo) = stored.to_resource::<Repository>() else {
        return;
    };
    let previous = repo.status.clone().unwrap_or_default();
    let conditions =
        repository_conditions(&previous.conditions, failure.map_or(Ok(()), Err), &now());
    if conditions == previous.conditions {
        return;
    }
    let mut status = previous;
    status.conditions = conditions;
    let Ok(value) = serde_json::to_value(&status) else {
        return;
    };
    if let Err(error) = store
        .update_status(
            ResourceKind::Repository,
            &stored.namespace,
            &stored.name,
            None,
            value,
        )
        .await
    {
        tracing::warn!(namespace = %stored.namespace, name = %stored.name, %error, "gitops: cannot write the repository's status");
    }
}
