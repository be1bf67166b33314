//! [`PodmanRuntime`]: each workload is a pod started with `podman kube play`, as
//! Flotta's agent does.
//!
//! Applying writes `<manifest_dir>/<workload>.yaml` (mode 0600: the workload's config
//! maps, then a `Pod` with the workload's name, labels, annotations and pod spec)
//! and runs `podman kube play --replace --log-driver k8s-file [--authfile FILE]
//! <file>`, where `FILE` is the workload's own registry credentials
//! (`imageRegistries.authFile`, written to `<manifest_dir>/<workload>.auth.json`,
//! mode 0600) or else the runtime's; removing runs `podman kube down <file>`;
//! listing reads `podman pod ps --format json`. Pods carry the label
//! `flotta-rs.io/workload=<name>`. Which definition a pod was played from is the
//! agent's record, not the runtime's.
//!
//! Beside the manifest, `<manifest_dir>/<workload>/` holds what the pod gets from
//! the host:
//! - `export/`, mounted in every container at `/export` ([`EXPORT_MOUNT`], also in
//!   `FLOTTA_EXPORT_DIR`): the directory the data upload sends;
//! - `volumes/<volume>/`, the files of each `secret` volume as the agent resolved
//!   them ([`WorkloadInputs`]), mounted in its place (`hostPath`);
//! - `logs.json`, each container's `k8s-file` log file as podman reports it
//!   (`podman container inspect`), for the log forwarding.
//!
//! Secrets never go through podman's own secret store: containers whose `env` or
//! `envFrom` read a secret get their environment resolved by the agent, as plain
//! values (what `kube play` itself makes of a `secretKeyRef`), and secret volumes
//! are files from the host. Podman 4.3 (Debian 12) cannot do either from a
//! `Secret` document: it reads the secret it stored as JSON for environment
//! variables (podman issue 16269), crashes on a secret volume without `optional`
//! (16636), and mounts the base64 text instead of the value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use flotta_core::reconcile::{WorkloadInputs, WorkloadPhase};
use flotta_core::wire::Workload;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, HostPathVolumeSource, Pod, PodSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use super::process::{EXPORT_DIR, EXPORT_VARIABLE};
use super::{LogFormat, RuntimeError, WorkloadRuntime, WorkloadState};
use crate::command::{CommandRunner, HostCommands};

/// Label on every pod this runtime starts; its value is the workload name.
pub const WORKLOAD_LABEL: &str = "flotta-rs.io/workload";
/// Where every container of a pod sees its workload's export directory.
pub const EXPORT_MOUNT: &str = "/export";
/// The name of the pod volume holding the export directory.
pub const EXPORT_VOLUME: &str = "flotta-export";
/// The file, in a workload's directory, naming its containers' log files.
const LOG_FILES: &str = "logs.json";

/// Settings of a [`PodmanRuntime`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PodmanOptions {
    /// The podman program (`podman`, looked up in `PATH`, by default).
    pub program: PathBuf,
    /// Arguments before every subcommand (`--remote`, `--url URL`, `--root DIR`).
    /// Rootless or rootful is whoever runs podman: the agent's user, or the
    /// service `--remote --url` points at.
    pub global_args: Vec<String>,
    /// Registry credentials file given to `podman kube play` as `--authfile`.
    pub authfile: Option<PathBuf>,
    /// Where the kube YAML files are written, with a directory per workload
    /// (`export/`, `volumes/`, `logs.json`: see the [module](self) documentation).
    pub manifest_dir: PathBuf,
}

impl PodmanOptions {
    /// `podman` from `PATH`, no extra arguments, no auth file, manifests in
    /// `manifest_dir`.
    pub fn new(manifest_dir: impl Into<PathBuf>) -> Self {
        Self {
            program: PathBuf::from("podman"),
            global_args: Vec::new(),
            authfile: None,
            manifest_dir: manifest_dir.into(),
        }
    }
}

/// Runs workloads as podman pods (`podman kube play`).
///
/// Phases come from the pod status podman reports (`Running`, `Created`,
/// `Degraded`, `Exited`, ...), mapped with [`WorkloadPhase::from_reported`];
/// `Degraded` (some containers not running) counts as failed. Only pods labelled
/// [`WORKLOAD_LABEL`] are listed.
///
/// ```no_run
/// # async fn demo() -> Result<(), flotta_agent_lib::RuntimeError> {
/// use flotta_agent_lib::runtime::{PodmanOptions, PodmanRuntime};
/// let mut options = PodmanOptions::new("/var/lib/flotta/podman");
/// options.authfile = Some("/etc/flotta/auth.json".into());
/// let runtime = PodmanRuntime::open(options).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PodmanRuntime {
    options: PodmanOptions,
    commands: Arc<dyn CommandRunner>,
    /// Serializes apply and remove of the files and pods.
    changes: tokio::sync::Mutex<()>,
}

/// One entry of `podman pod ps --format json`.
#[derive(Debug, Deserialize)]
struct PodEntry {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Status", default)]
    status: String,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

impl PodmanRuntime {
    /// Creates the manifest directory; podman itself is first run by the first
    /// apply or list.
    pub async fn open(options: PodmanOptions) -> Result<Self, RuntimeError> {
        Self::with_commands(options, Arc::new(HostCommands)).await
    }

    pub(crate) async fn with_commands(
        options: PodmanOptions,
        commands: Arc<dyn CommandRunner>,
    ) -> Result<Self, RuntimeError> {
        tokio::fs::create_dir_all(&options.manifest_dir)
            .await
            .map_err(|source| RuntimeError::Unavailable {
                reason: format!("cannot create {}", options.manifest_dir.display()),
                source: Some(Box::new(source)),
            })?;
        Ok(Self {
            options,
            commands,
            changes: tokio::sync::Mutex::new(()),
        })
    }

    /// The settings the runtime was opened with.
    pub fn options(&self) -> &PodmanOptions {
        &self.options
    }

    /// The kube YAML file of workload `name`.
    pub fn manifest_file(&self, name: &str) -> PathBuf {
        self.options.manifest_dir.join(format!("{name}.yaml"))
    }

    /// The directory of workload `name`: its export directory, secret volume
    /// files and the names of its log files.
    pub fn workload_dir(&self, name: &str) -> PathBuf {
        self.options.manifest_dir.join(name)
    }

    /// `podman [global args] <args>`.
    async fn podman(&self, args: Vec<String>) -> Result<crate::command::CommandOutput, String> {
        let mut all = self.options.global_args.clone();
        all.extend(args);
        self.commands
            .run(&self.options.program, &all)
            .await
            .map_err(|e| format!("cannot run {}: {e}", self.options.program.display()))
    }

    /// The registry credentials file of workload `name`, when it has its own.
    pub fn auth_file(&self, name: &str) -> PathBuf {
        self.options.manifest_dir.join(format!("{name}.auth.json"))
    }

    fn play_args(&self, file: &Path, authfile: Option<&Path>) -> Vec<String> {
        let mut args = vec![
            "kube".to_owned(),
            "play".to_owned(),
            "--replace".to_owned(),
            // The log files the log forwarding reads, whatever containers.conf says.
            "--log-driver".to_owned(),
            "k8s-file".to_owned(),
        ];
        if let Some(authfile) = authfile.or(self.options.authfile.as_deref()) {
            args.push("--authfile".to_owned());
            args.push(authfile.display().to_string());
        }
        args.push(file.display().to_string());
        args
    }

    async fn down(&self, file: &Path) -> Result<(), String> {
        let output = self
            .podman(vec![
                "kube".into(),
                "down".into(),
                file.display().to_string(),
            ])
            .await?;
        if output.success {
            Ok(())
        } else {
            Err(format!("podman kube down: {}", output.failure()))
        }
    }
}

/// The kube YAML of a workload: its config maps, then the pod.
#[cfg(test)]
pub(crate) fn kube_yaml(name: &str, workload: &Workload) -> Result<String, String> {
    let dir = Path::new("/var/lib/flotta/podman").join(name);
    kube_yaml_with(name, workload, &WorkloadInputs::default(), &dir)
}

/// The kube YAML of a workload with its inputs, its files under `workload_dir`:
/// its config maps, then the pod, its spec as [`pod_spec`] makes it.
pub(crate) fn kube_yaml_with(
    name: &str,
    workload: &Workload,
    inputs: &WorkloadInputs,
    workload_dir: &Path,
) -> Result<String, String> {
    let text = workload
        .specification
        .as_deref()
        .ok_or("the workload has no pod specification")?;
    let spec: PodSpec = serde_yaml_ng::from_str(text)
        .map_err(|e| format!("the pod specification is not a valid PodSpec: {e}"))?;
    let spec = pod_spec(spec, inputs, workload_dir)?;
    let mut labels = workload.labels.clone().unwrap_or_default();
    labels.insert(WORKLOAD_LABEL.to_owned(), name.to_owned());
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels),
            annotations: workload.annotations.clone().filter(|a| !a.is_empty()),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    };
    let mut documents = Vec::new();
    for (index, text) in workload.configmaps.iter().flatten().enumerate() {
        let map: ConfigMap = serde_yaml_ng::from_str(text)
            .map_err(|e| format!("configmaps[{index}] is not a valid ConfigMap: {e}"))?;
        // Server-side metadata (uid, resourceVersion, ...) means nothing to podman.
        let map = ConfigMap {
            metadata: ObjectMeta {
                name: map.metadata.name,
                labels: map.metadata.labels,
                ..Default::default()
            },
            ..map
        };
        documents.push(
            serde_yaml_ng::to_string(&map)
                .map_err(|e| format!("configmaps[{index}] cannot be encoded: {e}"))?,
        );
    }
    documents.push(
        serde_yaml_ng::to_string(&pod).map_err(|e| format!("the pod cannot be encoded: {e}"))?,
    );
    Ok(documents.join("---\n"))
}

/// The pod spec podman plays: `secret` volumes become `hostPath` volumes of
/// `<workload_dir>/volumes/<volume>`; a container whose `env` or `envFrom` reads a
/// secret gets its resolved environment as values; every container mounts the
/// export directory `<workload_dir>/export` at [`EXPORT_MOUNT`] (unless it mounts
/// something there itself) and has `FLOTTA_EXPORT_DIR` (unless it sets it).
fn pod_spec(
    mut spec: PodSpec,
    inputs: &WorkloadInputs,
    workload_dir: &Path,
) -> Result<PodSpec, String> {
    let host_path = |path: PathBuf| HostPathVolumeSource {
        path: path.display().to_string(),
        type_: Some("DirectoryOrCreate".into()),
    };
    for volume in spec.volumes.iter_mut().flatten() {
        if volume.secret.take().is_some() {
            super::check_file_name(&volume.name).map_err(|e| format!("volume name: {e}"))?;
            volume.host_path = Some(host_path(volume_dir(workload_dir, &volume.name)));
        }
    }
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    if volumes.iter().any(|v| v.name == EXPORT_VOLUME) {
        return Err(format!(
            "the volume name {EXPORT_VOLUME} is the runtime's (the export directory)"
        ));
    }
    volumes.push(Volume {
        name: EXPORT_VOLUME.into(),
        host_path: Some(host_path(workload_dir.join(EXPORT_DIR))),
        ..Default::default()
    });
    let containers = spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut());
    for container in containers {
        if reads_a_secret(container)
            && let Some(resolved) = inputs.container(&container.name)
        {
            container.env_from = None;
            container.env = Some(
                resolved
                    .env
                    .iter()
                    .map(|(name, value)| EnvVar {
                        name: name.clone(),
                        value: Some(value.clone()),
                        value_from: None,
                    })
                    .collect(),
            );
        }
        let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
        if mounts
            .iter()
            .all(|m| m.mount_path.trim_end_matches('/') != EXPORT_MOUNT)
        {
            mounts.push(VolumeMount {
                name: EXPORT_VOLUME.into(),
                mount_path: EXPORT_MOUNT.into(),
                ..Default::default()
            });
        }
        let env = container.env.get_or_insert_with(Vec::new);
        if env.iter().all(|v| v.name != EXPORT_VARIABLE) {
            env.push(EnvVar {
                name: EXPORT_VARIABLE.into(),
                value: Some(EXPORT_MOUNT.into()),
                value_from: None,
            });
        }
    }
    Ok(spec)
}

/// Whether a container's environment reads a secret.
fn reads_a_secret(container: &Container) -> bool {
    let from_env = container.env.iter().flatten().any(|v| {
        v.value_from
            .as_ref()
            .is_some_and(|from| from.secret_key_ref.is_some())
    });
    let from_env_from = container
        .env_from
        .iter()
        .flatten()
        .any(|source| source.secret_ref.is_some());
    from_env || from_env_from
}

/// The host directory of the files of secret volume `volume`.
fn volume_dir(workload_dir: &Path, volume: &str) -> PathBuf {
    workload_dir.join("volumes").join(volume)
}

async fn write_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    // Temporary file and rename: a crash never leaves a half-written manifest.
    // Owner-only: manifests and auth files hold secrets.
    let temporary = path.with_extension("tmp");
    tokio::fs::write(&temporary, contents).await?;
    tokio::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600)).await?;
    tokio::fs::rename(&temporary, path).await
}

/// The images of a workload's containers (init containers first), each once.
fn images_of(workload: &Workload) -> Result<Vec<String>, String> {
    let text = workload
        .specification
        .as_deref()
        .ok_or("the workload has no pod specification")?;
    let pod: k8s_openapi::api::core::v1::PodSpec = serde_yaml_ng::from_str(text)
        .map_err(|e| format!("the pod specification is not a valid PodSpec: {e}"))?;
    let mut images: Vec<String> = Vec::new();
    for container in pod.init_containers.iter().flatten().chain(&pod.containers) {
        if let Some(image) = container.image.clone().filter(|i| !i.is_empty())
            && !images.contains(&image)
        {
            images.push(image);
        }
    }
    Ok(images)
}

#[async_trait]
impl WorkloadRuntime for PodmanRuntime {
    async fn apply(&self, workload: &Workload) -> Result<(), RuntimeError> {
        self.apply_with(workload, &WorkloadInputs::default()).await
    }

    async fn prefetch(
        &self,
        workload: &Workload,
        inputs: &WorkloadInputs,
    ) -> Result<(), RuntimeError> {
        let name = workload
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or(RuntimeError::UnnamedWorkload)?;
        super::check_file_name(&name).map_err(|e| RuntimeError::ApplyFailed {
            name: name.clone(),
            reason: format!("name: {e}"),
            source: None,
        })?;
        let images = images_of(workload).map_err(|reason| RuntimeError::ApplyFailed {
            name: name.clone(),
            reason,
            source: None,
        })?;
        // The workload's own credentials, in a file of its own for the pull (the
        // apply writes the same file again).
        let auth = match &inputs.auth_file {
            Some(content) => {
                let path = self
                    .options
                    .manifest_dir
                    .join(format!("{name}.prefetch-auth.json"));
                write_file(&path, content)
                    .await
                    .map_err(|e| RuntimeError::ApplyFailed {
                        name: name.clone(),
                        reason: format!("cannot write {}", path.display()),
                        source: Some(Box::new(e)),
                    })?;
                Some(path)
            }
            None => self.options.authfile.clone(),
        };
        let result = async {
            for image in images {
                let exists = self
                    .podman(vec!["image".into(), "exists".into(), image.clone()])
                    .await;
                if exists.is_ok_and(|o| o.success) {
                    continue;
                }
                let mut args = vec!["pull".to_owned()];
                if let Some(auth) = &auth {
                    args.push("--authfile".to_owned());
                    args.push(auth.display().to_string());
                }
                args.push(image.clone());
                let failure = |reason: String| RuntimeError::PrefetchFailed {
                    name: name.clone(),
                    image: image.clone(),
                    reason,
                };
                let output = self.podman(args).await.map_err(&failure)?;
                if !output.success {
                    return Err(failure(output.failure()));
                }
            }
            Ok(())
        }
        .await;
        if inputs.auth_file.is_some() {
            let path = self
                .options
                .manifest_dir
                .join(format!("{name}.prefetch-auth.json"));
            let _ = tokio::fs::remove_file(path).await;
        }
        result
    }

    async fn apply_with(
        &self,
        workload: &Workload,
        inputs: &WorkloadInputs,
    ) -> Result<(), RuntimeError> {
        let name = workload
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or(RuntimeError::UnnamedWorkload)?;
        let failed = |reason: String| RuntimeError::ApplyFailed {
            name: name.clone(),
            reason,
            source: None,
        };
        super::check_file_name(&name).map_err(|e| failed(format!("name: {e}")))?;
        let workload_dir = self.workload_dir(&name);
        let yaml = kube_yaml_with(&name, workload, inputs, &workload_dir).map_err(failed)?;
        let _changes = self.changes.lock().await;
        write_host_files(&workload_dir, inputs)
            .await
            .map_err(|e| RuntimeError::ApplyFailed {
                name: name.clone(),
                reason: format!("cannot write the files of {}", workload_dir.display()),
                source: Some(Box::new(e)),
            })?;
        let auth = self.auth_file(&name);
        let own_auth = match &inputs.auth_file {
            Some(content) => {
                write_file(&auth, content)
                    .await
                    .map_err(|e| RuntimeError::ApplyFailed {
                        name: name.clone(),
                        reason: format!("cannot write {}", auth.display()),
                        source: Some(Box::new(e)),
                    })?;
                Some(auth)
            }
            None => {
                let _ = tokio::fs::remove_file(&auth).await;
                None
            }
        };
        let file = self.manifest_file(&name);
        write_file(&file, &yaml)
            .await
            .map_err(|e| RuntimeError::ApplyFailed {
                name: name.clone(),
                reason: format!("cannot write {}", file.display()),
                source: Some(Box::new(e)),
            })?;
        let output = self
            .podman(self.play_args(&file, own_auth.as_deref()))
            .await
            .map_err(failed)?;
        if !output.success {
            // Nothing of the new definition may stay half-started.
            if let Err(reason) = self.down(&file).await {
                tracing::warn!(workload = %name, %reason, "cleaning up after a failed play");
            }
            return Err(failed(format!("podman kube play: {}", output.failure())));
        }
        // The pod runs: without the names of its log files its logs are not
        // forwarded, which is no reason to take it down.
        if let Err(reason) = self.record_log_files(&name, workload).await {
            tracing::warn!(workload = %name, %reason, "the log files of the pod are unknown");
        }
        Ok(())
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        let _changes = self.changes.lock().await;
        let failed = |reason: String| RuntimeError::RemoveFailed {
            name: name.to_owned(),
            reason,
        };
        super::check_file_name(name).map_err(|e| failed(e.to_string()))?;
        let file = self.manifest_file(name);
        if tokio::fs::try_exists(&file).await.unwrap_or(false) {
            self.down(&file).await.map_err(failed)?;
        } else {
            // No manifest (lost with the state): remove the pod by name if it is ours.
            let listed = self.pods().await.map_err(failed)?;
            if listed.iter().any(|(pod, _)| pod == name) {
                let output = self
                    .podman(vec![
                        "pod".into(),
                        "rm".into(),
                        "--force".into(),
                        name.to_owned(),
                    ])
                    .await
                    .map_err(failed)?;
                if !output.success {
                    return Err(failed(format!("podman pod rm: {}", output.failure())));
                }
            }
        }
        let _ = tokio::fs::remove_file(&file).await;
        let _ = tokio::fs::remove_file(self.auth_file(name)).await;
        // The export directory stays: files not uploaded yet are the workload's data.
        let workload_dir = self.workload_dir(name);
        let _ = tokio::fs::remove_file(workload_dir.join(LOG_FILES)).await;
        match tokio::fs::remove_dir_all(workload_dir.join("volumes")).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(failed(format!(
                    "cannot remove {}: {e}",
                    workload_dir.join("volumes").display()
                )));
            }
            _ => {}
        }
        Ok(())
    }

    fn collects_logs(&self) -> bool {
        true
    }

    fn exports_data(&self) -> bool {
        true
    }

    fn export_dir(&self, name: &str) -> Option<PathBuf> {
        self.runs(name)
            .then(|| self.workload_dir(name).join(EXPORT_DIR))
    }

    fn log_files(&self, name: &str) -> Vec<(String, PathBuf)> {
        if !self.runs(name) {
            return Vec::new();
        }
        std::fs::read(self.workload_dir(name).join(LOG_FILES))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<BTreeMap<String, PathBuf>>(&bytes).ok())
            .map(|files| files.into_iter().collect())
            .unwrap_or_default()
    }

    fn log_format(&self) -> LogFormat {
        LogFormat::Cri
    }

    async fn list(&self) -> Result<Vec<WorkloadState>, RuntimeError> {
        let pods = self
            .pods()
            .await
            .map_err(|reason| RuntimeError::ListFailed { reason })?;
        let mut states = Vec::with_capacity(pods.len());
        for (name, status) in pods {
            let phase = match WorkloadPhase::from_reported(&status) {
                WorkloadPhase::Unknown if status.eq_ignore_ascii_case("degraded") => {
                    WorkloadPhase::Failed
                }
                phase => phase,
            };
            states.push(WorkloadState { name, phase });
        }
        states.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(states)
    }
}

impl PodmanRuntime {
    /// Whether workload `name` was applied and not removed (its manifest is
    /// there, also for a runtime opened after an agent restart).
    fn runs(&self, name: &str) -> bool {
        super::check_file_name(name).is_ok() && self.manifest_file(name).is_file()
    }

    /// Asks podman for the log file of each container of workload `name` and
    /// writes them to `<workload>/logs.json`.
    async fn record_log_files(&self, name: &str, workload: &Workload) -> Result<(), String> {
        let spec: PodSpec =
            serde_yaml_ng::from_str(workload.specification.as_deref().unwrap_or(""))
                .map_err(|e| e.to_string())?;
        // Init containers are gone once they ran: only the pod's containers.
        let mut args = vec!["container".to_owned(), "inspect".to_owned()];
        args.extend(spec.containers.iter().map(|c| format!("{name}-{}", c.name)));
        let output = self.podman(args).await?;
        if !output.success {
            return Err(format!("podman container inspect: {}", output.failure()));
        }
        let files = parse_log_paths(name, &output.stdout)?;
        let json = serde_json::to_string_pretty(&files).map_err(|e| e.to_string())?;
        write_file(&self.workload_dir(name).join(LOG_FILES), &json)
            .await
            .map_err(|e| format!("cannot write {LOG_FILES}: {e}"))
    }

    /// (workload name, podman pod status) of every pod carrying [`WORKLOAD_LABEL`].
    async fn pods(&self) -> Result<Vec<(String, String)>, String> {
        let output = self
            .podman(vec![
                "pod".into(),
                "ps".into(),
                "--format".into(),
                "json".into(),
            ])
            .await?;
        if !output.success {
            return Err(format!("podman pod ps: {}", output.failure()));
        }
        parse_pod_list(&output.stdout)
    }
}

/// One entry of `podman container inspect`: its name and
/// `HostConfig.LogConfig.Path`.
#[derive(Debug, Deserialize)]
struct ContainerEntry {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "HostConfig", default)]
    host_config: Option<HostConfigEntry>,
}

#[derive(Debug, Deserialize)]
struct HostConfigEntry {
    #[serde(rename = "LogConfig", default)]
    log_config: Option<LogConfigEntry>,
}

#[derive(Debug, Deserialize)]
struct LogConfigEntry {
    #[serde(rename = "Path", default)]
    path: Option<String>,
}

/// Parses `podman container inspect` of the containers of pod `pod` (named
/// `<pod>-<container>` by `kube play`) into container name → log file.
pub(crate) fn parse_log_paths(
    pod: &str,
    stdout: &[u8],
) -> Result<BTreeMap<String, PathBuf>, String> {
    let entries: Vec<ContainerEntry> = serde_json::from_slice(stdout)
        .map_err(|e| format!("podman container inspect printed unexpected JSON: {e}"))?;
    let prefix = format!("{pod}-");
    Ok(entries
        .into_iter()
        .filter_map(|entry| {
            let container = entry.name.strip_prefix(&prefix)?.to_owned();
            let path = entry.host_config?.log_config?.path?;
            (!path.is_empty()).then(|| (container, PathBuf::from(path)))
        })
        .collect())
}

/// Creates `<workload_dir>/export` and writes the files of the workload's secret
/// volumes afresh under `<workload_dir>/volumes/<volume>/`, with their modes.
async fn write_host_files(workload_dir: &Path, inputs: &WorkloadInputs) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    tokio::fs::create_dir_all(workload_dir.join(EXPORT_DIR)).await?;
    let volumes = workload_dir.join("volumes");
    match tokio::fs::remove_dir_all(&volumes).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // Owner-only: the files are secrets (a container sees its volume, not this).
    tokio::fs::create_dir_all(&volumes).await?;
    tokio::fs::set_permissions(&volumes, std::fs::Permissions::from_mode(0o700)).await?;
    for volume in inputs.volumes.iter().filter(|v| v.secret) {
        if super::check_file_name(&volume.name).is_err() {
            // Refused by the kube YAML before anything is written.
            continue;
        }
        let dir = volume_dir(workload_dir, &volume.name);
        tokio::fs::create_dir_all(&dir).await?;
        for file in &volume.files {
            // Paths were checked relative, without `..`, when resolved.
            let path = dir.join(&file.path);
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            tokio::fs::write(&path, &file.content).await?;
            tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(file.mode)).await?;
        }
    }
    Ok(())
}

/// Parses `podman pod ps --format json` (an array; `null` or nothing when there are
/// no pods) into (workload name, status) of the pods labelled as ours.
pub(crate) fn parse_pod_list(stdout: &[u8]) -> Result<Vec<(String, String)>, String> {
    let text = String::from_utf8_lossy(stdout);
    if text.trim().is_empty() || text.trim() == "null" {
        return Ok(Vec::new());
    }
    let entries: Vec<PodEntry> = serde_json::from_str(&text)
        .map_err(|e| format!("podman pod ps printed unexpected JSON: {e}"))?;
    Ok(entries
        .into_iter()
        .filter_map(|entry| {
            let workload = entry.labels.as_ref()?.get(WORKLOAD_LABEL)?.clone();
            (workload == entry.name).then_some((workload, entry.status))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{CommandOutput, RecordedCommands};

    fn workload() -> Workload {
        Workload {
            name: Some("web".into()),
            labels: Some(BTreeMap::from([("app".to_owned(), "web".to_owned())])),
            specification: Some(
                "containers:\n- name: nginx\n  image: quay.io/x/nginx:1\n  envFrom:\n  - configMapRef: {name: web-settings}\n".into(),
            ),
            configmaps: Some(vec![
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-settings\n  uid: 1234\n  resourceVersion: '7'\ndata:\n  mode: fast\n".into(),
            ]),
            ..Default::default()
        }
    }

    async fn runtime(dir: &Path, authfile: Option<&str>) -> (PodmanRuntime, Arc<RecordedCommands>) {
        let commands = Arc::new(RecordedCommands::default());
        let mut options = PodmanOptions::new(dir);
        options.program = "/usr/bin/podman".into();
        options.global_args = vec!["--log-level".into(), "error".into()];
        options.authfile = authfile.map(PathBuf::from);
        let runtime = PodmanRuntime::with_commands(options, commands.clone())
            .await
            .expect("open");
        (runtime, commands)
    }

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_kube_yaml_has_the_config_maps_then_the_labelled_pod_with_its_export_directory() {
        let yaml = kube_yaml("web", &workload()).expect("yaml");
        let expected = "\
apiVersion: v1
kind: ConfigMap
data:
  mode: fast
metadata:
  name: web-settings
---
apiVersion: v1
kind: Pod
metadata:
  labels:
    app: web
    flotta-rs.io/workload: web
  name: web
spec:
  containers:
  - env:
    - name: FLOTTA_EXPORT_DIR
      value: /export
    envFrom:
    - configMapRef:
        name: web-settings
    image: quay.io/x/nginx:1
    name: nginx
    volumeMounts:
    - mountPath: /export
      name: flotta-export
  volumes:
  - hostPath:
      path: /var/lib/flotta/podman/web/export
      type: DirectoryOrCreate
    name: flotta-export
";
        assert_eq!(yaml, expected);
    }

    #[test]
    fn a_container_keeps_its_own_export_mount_and_variable() {
        let mut own = workload();
        own.specification = Some(
            "containers:\n- name: a\n  image: x\n  env: [{name: FLOTTA_EXPORT_DIR, value: /data}]\n  volumeMounts: [{name: data, mountPath: /export/}]\nvolumes: [{name: data, emptyDir: {}}]\n".into(),
        );
        let yaml = kube_yaml("web", &own).expect("yaml");
        let pod: Pod =
            serde_yaml_ng::from_str(yaml.split("---\n").last().expect("pod")).expect("pod");
        let container = &pod.spec.expect("spec").containers[0];
        assert_eq!(container.volume_mounts.as_ref().map(Vec::len), Some(1));
        let env = container.env.as_ref().expect("env");
        assert_eq!(env.len(), 1);
        assert_eq!(env[0].value.as_deref(), Some("/data"));
        let mut taken = workload();
        taken.specification = Some(
            "containers: [{name: a, image: x}]\nvolumes: [{name: flotta-export, emptyDir: {}}]\n"
                .into(),
        );
        assert!(
            kube_yaml("web", &taken)
                .expect_err("the runtime's volume name")
                .contains("flotta-export")
        );
    }

    #[test]
    fn a_bad_pod_or_config_map_is_refused_with_the_cause() {
        let mut bad = workload();
        bad.specification = Some("containers: [".into());
        assert!(kube_yaml("web", &bad).expect_err("pod").contains("PodSpec"));
        let mut bad = workload();
        bad.configmaps = Some(vec!["data: [".into()]);
        assert!(
            kube_yaml("web", &bad)
                .expect_err("map")
                .contains("configmaps[0]")
        );
    }

    fn web_token() -> flotta_core::wire::Secret {
        use base64::Engine;
        flotta_core::wire::Secret {
            name: Some("web-token".into()),
            data: Some(format!(
                "{{\"token\": \"{}\"}}",
                base64::engine::general_purpose::STANDARD.encode("s3cr3t")
            )),
            extra: Default::default(),
        }
    }

    fn inputs_for(workload: &Workload) -> WorkloadInputs {
        let secret = web_token();
        let mut workload = workload.clone();
        workload.specification = Some(
            "containers:\n- name: nginx\n  image: quay.io/x/nginx:1\n  env:\n  - name: TOKEN\n    valueFrom: {secretKeyRef: {name: web-token, key: token}}\n".into(),
        );
        workload.image_registries = Some(flotta_core::wire::ImageRegistries {
            auth_file: Some(
                "{\"auths\": {\"registry.local\": {\"auth\": \"dXNlcjpwYXNz\"}}}".into(),
            ),
            extra: Default::default(),
        });
        WorkloadInputs::resolve(&workload, &[secret]).expect("inputs")
    }

    #[test]
    fn secrets_reach_the_pod_resolved_never_as_podman_secrets() {
        let mut with_volume = workload();
        with_volume.specification = Some(
            "containers:\n- name: nginx\n  image: quay.io/x/nginx:1\n  env:\n  - name: TOKEN\n    valueFrom: {secretKeyRef: {name: web-token, key: token}}\n- name: side\n  image: quay.io/x/side:1\n  envFrom: [{configMapRef: {name: web-settings}}]\n  volumeMounts: [{name: token, mountPath: /run/token}]\nvolumes:\n- name: token\n  secret: {secretName: web-token}\n".into(),
        );
        let inputs = WorkloadInputs::resolve(&with_volume, &[web_token()]).expect("inputs");
        let dir = Path::new("/var/lib/flotta/podman/web");
        let yaml = kube_yaml_with("web", &with_volume, &inputs, dir).expect("yaml");
        let documents: Vec<&str> = yaml.split("---\n").collect();
        assert_eq!(documents.len(), 2, "{yaml}");
        assert!(documents[0].contains("kind: ConfigMap"));
        assert!(
            !yaml.contains("kind: Secret") && !yaml.contains("secretKeyRef"),
            "{yaml}"
        );
        let pod: Pod = serde_yaml_ng::from_str(documents[1]).expect("pod");
        let spec = pod.spec.expect("spec");
        let env: Vec<(&str, Option<&str>)> = spec.containers[0]
            .env
            .iter()
            .flatten()
            .map(|v| (v.name.as_str(), v.value.as_deref()))
            .collect();
        assert_eq!(
            env,
            vec![
                ("TOKEN", Some("s3cr3t")),
                ("FLOTTA_EXPORT_DIR", Some("/export"))
            ]
        );
        // A container reading no secret keeps its references for podman.
        assert!(spec.containers[1].env_from.is_some());
        let volume = &spec.volumes.as_ref().expect("volumes")[0];
        assert!(volume.secret.is_none());
        assert_eq!(
            volume.host_path.as_ref().map(|h| h.path.as_str()),
            Some("/var/lib/flotta/podman/web/volumes/token")
        );
    }

    #[tokio::test]
    async fn secret_volume_files_are_written_owner_only_and_removed_with_the_workload() {
        let dir = tempfile::tempdir().expect("dir");
        let (runtime, _commands) = runtime(dir.path(), None).await;
        let mut with_volume = workload();
        with_volume.specification = Some(
            "containers: [{name: a, image: x}]\nvolumes: [{name: token, secret: {secretName: web-token}}]\n".into(),
        );
        let inputs = WorkloadInputs::resolve(&with_volume, &[web_token()]).expect("inputs");
        runtime
            .apply_with(&with_volume, &inputs)
            .await
            .expect("apply");
        let file = dir.path().join("web/volumes/token/token");
        assert_eq!(std::fs::read(&file).expect("secret file"), b"s3cr3t");
        use std::os::unix::fs::PermissionsExt as _;
        let mode =
            |path: &Path| std::fs::metadata(path).expect("file").permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&dir.path().join("web/volumes")), 0o700);
        assert!(dir.path().join("web/export").is_dir());
        assert_eq!(
            runtime.export_dir("web"),
            Some(dir.path().join("web/export"))
        );
        runtime.remove("web").await.expect("remove");
        assert!(!dir.path().join("web/volumes").exists());
        assert!(
            dir.path().join("web/export").is_dir(),
            "exported data stays"
        );
        assert_eq!(runtime.export_dir("web"), None);
    }

    #[tokio::test]
    async fn the_log_files_are_the_ones_podman_reports_for_the_containers() {
        let dir = tempfile::tempdir().expect("dir");
        let (runtime, commands) = runtime(dir.path(), None).await;
        commands.reply_stdout(
            &["--log-level", "error", "container", "inspect"],
            r#"[
  {"Name": "web-nginx", "HostConfig": {"LogConfig": {"Type": "k8s-file", "Path": "/s/c1/userdata/ctr.log"}}},
  {"Name": "abc-infra", "HostConfig": {"LogConfig": {"Type": "k8s-file", "Path": "/s/c0/ctr.log"}}}
]"#,
        );
        assert!(runtime.log_files("web").is_empty());
        runtime.apply(&workload()).await.expect("apply");
        assert_eq!(
            commands.calls().last().cloned(),
            Some(strings(&[
                "/usr/bin/podman",
                "--log-level",
                "error",
                "container",
                "inspect",
                "web-nginx"
            ]))
        );
        assert_eq!(
            runtime.log_files("web"),
            vec![("nginx".to_owned(), PathBuf::from("/s/c1/userdata/ctr.log"))]
        );
        assert_eq!(runtime.log_format(), LogFormat::Cri);
        // An agent restarted later finds them again.
        let (again, _) = self::runtime(dir.path(), None).await;
        assert_eq!(again.log_files("web").len(), 1);
        runtime.remove("web").await.expect("remove");
        assert!(again.log_files("web").is_empty());
    }

    #[tokio::test]
    async fn prefetch_pulls_missing_images_with_the_credentials_and_names_a_failure() {
        let dir = tempfile::tempdir().expect("dir");
        let (runtime, commands) = runtime(dir.path(), Some("/etc/flotta/auth.json")).await;
        let failed = |stderr: &str| CommandOutput {
            success: false,
            code: Some(125),
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
        };
        let image_missing = ["--log-level", "error", "image", "exists"];
        commands.reply(&image_missing, failed(""));
        runtime
            .prefetch(&workload(), &WorkloadInputs::default())
            .await
            .expect("prefetch");
        assert_eq!(
            commands.calls().last().cloned(),
            Some(strings(&[
                "/usr/bin/podman",
                "--log-level",
                "error",
                "pull",
                "--authfile",
                "/etc/flotta/auth.json",
                "quay.io/x/nginx:1",
            ]))
        );
        commands.reply(
            &["--log-level", "error", "pull"],
            failed("Error: initializing source docker://quay.io/x/nginx:1: connection refused"),
        );
        let error = runtime
            .prefetch(&workload(), &WorkloadInputs::default())
            .await
            .expect_err("the pull fails");
        assert!(
            matches!(&error, RuntimeError::PrefetchFailed { image, .. } if image == "quay.io/x/nginx:1"),
            "{error:?}"
        );
        assert!(error.to_string().contains("connection refused"), "{error}");
        // Nothing was played: prefetch changes no workload.
        assert!(
            commands
                .calls()
                .iter()
                .all(|c| !c.contains(&"play".to_owned()))
        );
        // An image already present is not pulled.
        commands.reply(
            &image_missing,
            CommandOutput {
                success: true,
                code: Some(0),
                ..Default::default()
            },
        );
        let before = commands.calls().len();
        runtime
            .prefetch(&workload(), &WorkloadInputs::default())
            .await
            .expect("present");
        assert_eq!(commands.calls().len(), before + 1);
    }

    #[tokio::test]
    async fn a_workload_with_registry_credentials_plays_with_its_own_authfile() {
        let dir = tempfile::tempdir().expect("dir");
        let (runtime, commands) = runtime(dir.path(), Some("/etc/flotta/auth.json")).await;
        let inputs = inputs_for(&workload());
        runtime
            .apply_with(&workload(), &inputs)
            .await
            .expect("apply");
        let auth = dir.path().join("web.auth.json");
        let file = dir.path().join("web.yaml");
        assert_eq!(
            std::fs::read_to_string(&auth).expect("auth file"),
            inputs.auth_file.clone().expect("auth")
        );
        for written in [&auth, &file] {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(written)
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{}", written.display());
        }
        assert_eq!(
            commands.calls()[..1].to_vec(),
            vec![strings(&[
                "/usr/bin/podman",
                "--log-level",
                "error",
                "kube",
                "play",
                "--replace",
                "--log-driver",
                "k8s-file",
                "--authfile",
                &auth.display().to_string(),
                &file.display().to_string(),
            ])]
        );
        runtime.remove("web").await.expect("remove");
        assert!(!auth.exists(), "the auth file goes with the workload");
    }

    #[tokio::test]
    async fn apply_writes_the_file_and_plays_it_with_the_authfile() {
        let dir = tempfile::tempdir().expect("dir");
        let (runtime, commands) = runtime(dir.path(), Some("/etc/flotta/auth.json")).await;
        runtime.apply(&workload()).await.expect("apply");
        let file = dir.path().join("web.yaml");
        assert_eq!(
            std::fs::read_to_string(&file).expect("manifest"),
            kube_yaml_with(
                "web",
                &workload(),
                &WorkloadInputs::default(),
                &dir.path().join("web")
            )
            .expect("yaml")
        );
        assert_eq!(
            commands.calls()[..1].to_vec(),
            vec![strings(&[
                "/usr/bin/podman",
                "--log-level",
                "error",
                "kube",
                "play",
                "--replace",
                "--log-driver",
                "k8s-file",
                "--authfile",
                "/etc/flotta/auth.json",
                &file.display().to_string(),
            ])]
        );
    }

    #[tokio::test]
    async fn a_failed_play_is_taken_down_and_reported_with_stderr() {
        let dir = tempfile::tempdir().expect("dir");
        let (runtime, commands) = runtime(dir.path(), None).await;
        commands.reply(
            &["--log-level", "error", "kube", "play"],
            CommandOutput {
                success: false,
                code: Some(125),
                stdout: Vec::new(),
                stderr: b"Error: image not known\n".to_vec(),
            },
        );
        let error = runtime.apply(&workload()).await.expect_err("play fails");
        let text = error.to_string();
        assert!(
            text.contains("exit status 125: Error: image not known"),
            "{text}"
        );
        let file = dir.path().join("web.yaml").display().to_string();
        assert_eq!(
            commands.calls().last().cloned(),
            Some(strings(&[
                "/usr/bin/podman",
                "--log-level",
                "error",
                "kube",
                "down",
                &file
            ]))
        );
    }

    #[tokio::test]
    async fn list_maps_podman_states_of_its_own_pods() {
        let dir = tempfile::tempdir().expect("dir");
        let (runtime, commands) = runtime(dir.path(), None).await;
        runtime.apply(&workload()).await.expect("apply");
        commands.reply_stdout(
            &["--log-level", "error", "pod", "ps"],
            r#"[
  {"Id": "a1", "Name": "web", "Status": "Running", "Labels": {"app": "web", "flotta-rs.io/workload": "web"}},
  {"Id": "b2", "Name": "cache", "Status": "Degraded", "Labels": {"flotta-rs.io/workload": "cache"}},
  {"Id": "c3", "Name": "job", "Status": "Exited", "Labels": {"flotta-rs.io/workload": "job"}},
  {"Id": "d4", "Name": "starting", "Status": "Created", "Labels": {"flotta-rs.io/workload": "starting"}},
  {"Id": "e5", "Name": "someone-else", "Status": "Running", "Labels": {}},
  {"Id": "f6", "Name": "no-labels", "Status": "Running"}
]"#,
        );
        let listed = runtime.list().await.expect("list");
        let summary: Vec<(&str, WorkloadPhase)> =
            listed.iter().map(|w| (w.name.as_str(), w.phase)).collect();
        assert_eq!(
            summary,
            vec![
                ("cache", WorkloadPhase::Failed),
                ("job", WorkloadPhase::Failed),
                ("starting", WorkloadPhase::Deploying),
                ("web", WorkloadPhase::Running),
            ]
        );
        assert_eq!(
            commands.calls().last().cloned(),
            Some(strings(&[
                "/usr/bin/podman",
                "--log-level",
                "error",
                "pod",
                "ps",
                "--format",
                "json"
            ]))
        );
    }

    #[tokio::test]
    async fn remove_takes_the_pod_down_and_forgets_it() {
        let dir = tempfile::tempdir().expect("dir");
        let (runtime, commands) = runtime(dir.path(), None).await;
        runtime.apply(&workload()).await.expect("apply");
        let file = dir.path().join("web.yaml").display().to_string();
        runtime.remove("web").await.expect("remove");
        assert_eq!(
            commands.calls().last().cloned(),
            Some(strings(&[
                "/usr/bin/podman",
                "--log-level",
                "error",
                "kube",
                "down",
                &file
            ]))
        );
        assert!(!dir.path().join("web.yaml").exists());
        // Not known and no such pod: nothing to do, still a success.
        runtime.remove("web").await.expect("remove again");
        assert_eq!(
            commands.calls().last().map(|c| c[3..5].to_vec()),
            Some(strings(&["pod", "ps"]))
        );
    }

    #[test]
    fn unexpected_pod_lists_are_errors_and_empty_ones_are_empty() {
        assert_eq!(parse_pod_list(b"null\n"), Ok(Vec::new()));
        assert_eq!(parse_pod_list(b""), Ok(Vec::new()));
        assert!(parse_pod_list(b"{\"not\": \"a list\"}").is_err());
    }

    #[tokio::test]
    async fn names_that_escape_the_directory_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let (runtime, commands) = runtime(dir.path(), None).await;
        let mut escaping = workload();
        escaping.name = Some("../etc".into());
        assert!(matches!(
            runtime.apply(&escaping).await,
            Err(RuntimeError::ApplyFailed { .. })
        ));
        assert!(commands.calls().is_empty());
    }
}
