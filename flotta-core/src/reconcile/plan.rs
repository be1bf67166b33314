//! Planning: the ordered actions that take a device from what it runs to a desired
//! configuration, and a pure simulation of applying them.
//!
//! [`plan`] compares the desired configuration with the [`ObservedState`] (what the
//! device's runtime really has), so planning again after applying yields nothing.
//! Actions come in this order, each group sorted by name or path:
//!
//! 1. [`Action::RemoveWorkload`]: workloads no longer wanted;
//! 2. [`Action::RemoveSecret`], [`Action::PutSecret`]: secrets;
//! 3. [`Action::RemoveFile`], [`Action::WriteFile`]: the config-file overlay;
//! 4. [`Action::ApplySettings`]: metrics, storage, log collection, mounts;
//! 5. [`Action::StartWorkload`], [`Action::ReplaceWorkload`]: new and changed workloads
//!    (after the secrets and files they may read), and workloads whose secrets changed;
//! 6. [`Action::SetHeartbeat`]: heartbeat settings;
//! 7. [`Action::UpgradeOs`]: last, as it may reboot the device, and only when the
//!    desired OS says `automatically_upgrade: true` (Flotta's agent ignored the flag).
//!
//! A workload is removed only when the device runtime knows it as one of ours (it has
//! a fingerprint) or the current configuration lists it: workloads somebody else
//! started on the device are left alone.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::PodSpec;

use crate::wire;

use super::WorkloadPhase;
use super::render::RenderedConfig;
use super::version::ConfigVersion;

/// One step of a plan.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// Stop and remove a workload.
    RemoveWorkload {
        /// Workload name.
        name: String,
    },
    /// Remove a secret.
    RemoveSecret {
        /// Secret name.
        name: String,
    },
    /// Create or update a secret.
    PutSecret {
        /// The secret.
        secret: wire::Secret,
    },
    /// Remove a file written by an earlier configuration.
    RemoveFile {
        /// Absolute path.
        path: String,
    },
    /// Write a file.
    WriteFile {
        /// The file.
        file: wire::FileInfo,
    },
    /// Apply device settings other than files, heartbeat and OS (metrics, storage, log
    /// collection, mounts, ansible manager).
    ApplySettings {
        /// The configuration; its `files`, `heartbeat` and `os` are left empty.
        settings: Box<wire::DeviceConfiguration>,
    },
    /// Start a workload the device does not run.
    StartWorkload {
        /// The workload.
        workload: Box<wire::Workload>,
    },
    /// Replace a running workload whose definition changed.
    ReplaceWorkload {
        /// The new definition.
        workload: Box<wire::Workload>,
    },
    /// Change the heartbeat settings.
    SetHeartbeat {
        /// New settings (`None`: the agent's defaults).
        heartbeat: Option<wire::HeartbeatConfiguration>,
    },
    /// Upgrade the operating system.
    UpgradeOs {
        /// The target.
        os: wire::OsInformation,
    },
}

/// A workload as the device runtime reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedWorkload {
    /// Fingerprint of the definition it was started from (see [`fingerprint`]);
    /// `None` for a workload this agent did not start.
    pub fingerprint: Option<ConfigVersion>,
    /// Its phase.
    pub phase: WorkloadPhase,
}

/// Operating system the device runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedOs {
    /// OSTree commit.
    pub commit_id: Option<String>,
    /// Bootable OS image.
    pub image: Option<String>,
}

/// What a device really has, as its runtime reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedState {
    /// Workloads by name.
    pub workloads: BTreeMap<String, ObservedWorkload>,
    /// Secret fingerprints by name.
    pub secrets: BTreeMap<String, ConfigVersion>,
    /// File fingerprints by path.
    pub files: BTreeMap<String, ConfigVersion>,
    /// Fingerprint of the settings last applied ([`Action::ApplySettings`]).
    pub settings: Option<ConfigVersion>,
    /// Heartbeat settings in force.
    pub heartbeat: Option<wire::HeartbeatConfiguration>,
    /// Operating system.
    pub os: ObservedOs,
}

/// Fingerprint of one item (workload, secret, file, settings): the content hash of
/// its canonical JSON.
pub fn fingerprint<T: serde::Serialize>(item: &T) -> ConfigVersion {
    ConfigVersion::of(item).unwrap_or_default()
}

fn settings_of(config: &RenderedConfig) -> wire::DeviceConfiguration {
    let mut settings = config.message.configuration.clone().unwrap_or_default();
    settings.files = None;
    settings.heartbeat = None;
    settings.os = None;
    settings
}

fn workloads_of(config: &RenderedConfig) -> impl Iterator<Item = (&str, &wire::Workload)> {
    config
        .message
        .workloads
        .iter()
        .flatten()
        .map(|w| (w.name.as_deref().unwrap_or(""), w))
}

fn secrets_of(config: &RenderedConfig) -> impl Iterator<Item = (&str, &wire::Secret)> {
    config
        .message
        .secrets
        .iter()
        .flatten()
        .map(|s| (s.name.as_deref().unwrap_or(""), s))
}

fn files_of(config: &RenderedConfig) -> impl Iterator<Item = &wire::FileInfo> {
    config
        .message
        .configuration
        .iter()
        .filter_map(|c| c.files.as_ref())
        .flatten()
}

fn os_of(config: &RenderedConfig) -> Option<&wire::OsInformation> {
    config.message.configuration.as_ref()?.os.as_ref()
}

fn os_target(os: &wire::OsInformation) -> ObservedOs {
    ObservedOs {
        commit_id: os.commit_id.clone(),
        image: os.image.clone(),
    }
}

impl ObservedState {
    /// The state of a device that applied `config` completely, every workload running
    /// (and the OS target reached, whatever `automatically_upgrade` says).
    pub fn from_config(config: &RenderedConfig) -> Self {
        Self {
            workloads: workloads_of(config)
                .map(|(name, w)| {
                    (
                        name.to_owned(),
                        ObservedWorkload {
                            fingerprint: Some(fingerprint(w)),
                            phase: WorkloadPhase::Running,
                        },
                    )
                })
                .collect(),
            secrets: secrets_of(config)
                .map(|(name, s)| (name.to_owned(), fingerprint(s)))
                .collect(),
            files: files_of(config)
                .map(|f| (f.path.clone(), fingerprint(f)))
                .collect(),
            settings: Some(fingerprint(&settings_of(config))),
            heartbeat: config
                .message
                .configuration
                .as_ref()
                .and_then(|c| c.heartbeat.clone()),
            os: os_of(config).map(os_target).unwrap_or_default(),
        }
    }
}

/// The ordered actions that take a device observed as `observed`, last configured
/// with `current`, to `desired` (see the module documentation).
pub fn plan(
    current: &RenderedConfig,
    desired: &RenderedConfig,
    observed: &ObservedState,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let wanted: BTreeMap<&str, &wire::Workload> = workloads_of(desired).collect();
    let ours: BTreeSet<&str> = workloads_of(current).map(|(n, _)| n).collect();

    for (name, workload) in &observed.workloads {
        let managed = workload.fingerprint.is_some() || ours.contains(name.as_str());
        if managed && !wanted.contains_key(name.as_str()) {
            actions.push(Action::RemoveWorkload { name: name.clone() });
        }
    }

    let wanted_secrets: BTreeMap<&str, &wire::Secret> = secrets_of(desired).collect();
    let mut changed_secrets = BTreeSet::new();
    for name in observed.secrets.keys() {
        if !wanted_secrets.contains_key(name.as_str()) {
            actions.push(Action::RemoveSecret { name: name.clone() });
            changed_secrets.insert(name.clone());
        }
    }
    for (name, secret) in &wanted_secrets {
        if observed.secrets.get(*name) != Some(&fingerprint(*secret)) {
            actions.push(Action::PutSecret {
                secret: (*secret).clone(),
            });
            changed_secrets.insert((*name).to_owned());
        }
    }

    let wanted_files: BTreeMap<&str, &wire::FileInfo> =
        files_of(desired).map(|f| (f.path.as_str(), f)).collect();
    for path in observed.files.keys() {
        if !wanted_files.contains_key(path.as_str()) {
            actions.push(Action::RemoveFile { path: path.clone() });
        }
    }
    for (path, file) in &wanted_files {
        if observed.files.get(*path) != Some(&fingerprint(*file)) {
            actions.push(Action::WriteFile {
                file: (*file).clone(),
            });
        }
    }

    let settings = settings_of(desired);
    if observed.settings.as_ref() != Some(&fingerprint(&settings)) {
        actions.push(Action::ApplySettings {
            settings: Box::new(settings),
        });
    }

    for (name, workload) in &wanted {
        match observed.workloads.get(*name) {
            None => actions.push(Action::StartWorkload {
                workload: Box::new((*workload).clone()),
            }),
            Some(running) if running.fingerprint.as_ref() != Some(&fingerprint(*workload)) => {
                actions.push(Action::ReplaceWorkload {
                    workload: Box::new((*workload).clone()),
                });
            }
            // Secrets reach containers as environment variables, read at start: a
            // workload reading a changed secret must restart to see it.
            Some(_) if reads_any_secret(workload, &changed_secrets) => {
                actions.push(Action::ReplaceWorkload {
                    workload: Box::new((*workload).clone()),
                });
            }
            Some(_) => {}
        }
    }

    let heartbeat = desired
        .message
        .configuration
        .as_ref()
        .and_then(|c| c.heartbeat.clone());
    if heartbeat != observed.heartbeat {
        actions.push(Action::SetHeartbeat { heartbeat });
    }

    if let Some(os) = os_of(desired) {
        let target = os_target(os);
        let has_target = target.commit_id.is_some() || target.image.is_some();
        if has_target && os.automatically_upgrade == Some(true) && target != observed.os {
            actions.push(Action::UpgradeOs { os: os.clone() });
        }
    }
    actions
}

/// Names of the secrets a workload's containers read (`env[].valueFrom.secretKeyRef`,
/// `envFrom[].secretRef`, init containers too), from its pod specification. A
/// specification that does not parse reads none.
pub fn secrets_read_by(workload: &wire::Workload) -> BTreeSet<String> {
    let Some(pod) = workload
        .specification
        .as_deref()
        .and_then(|text| serde_yaml_ng::from_str::<PodSpec>(text).ok())
    else {
        return BTreeSet::new();
    };
    pod.containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
        .flat_map(|container| {
            let from_env = container
                .env
                .iter()
                .flatten()
                .filter_map(|env| env.value_from.as_ref()?.secret_key_ref.as_ref())
                .map(|r| r.name.clone());
            let from_env_from = container
                .env_from
                .iter()
                .flatten()
                .filter_map(|env_from| env_from.secret_ref.as_ref())
                .map(|r| r.name.clone());
            from_env.chain(from_env_from).collect::<Vec<_>>()
        })
        .collect()
}

fn reads_any_secret(workload: &wire::Workload, changed: &BTreeSet<String>) -> bool {
    !changed.is_empty() && !secrets_read_by(workload).is_disjoint(changed)
}

/// The plan back to the last good configuration after applying `failed` went wrong
/// part way (the device is in `observed`).
pub fn rollback_plan(
    failed: &RenderedConfig,
    last_good: &RenderedConfig,
    observed: &ObservedState,
) -> Vec<Action> {
    plan(failed, last_good, observed)
}

/// Simulates applying `actions` to `state`: what an in-memory runtime does, and what
/// tests use to check that a plan reaches its target. Started and replaced workloads
/// are taken to be running.
pub fn apply_to(state: &ObservedState, actions: &[Action]) -> ObservedState {
    let mut state = state.clone();
    for action in actions {
        match action {
            Action::RemoveWorkload { name } => {
                state.workloads.remove(name);
            }
            Action::RemoveSecret { name } => {
                state.secrets.remove(name);
            }
            Action::PutSecret { secret } => {
                state
                    .secrets
                    .insert(secret.name.clone().unwrap_or_default(), fingerprint(secret));
            }
            Action::RemoveFile { path } => {
                state.files.remove(path);
            }
            Action::WriteFile { file } => {
                state.files.insert(file.path.clone(), fingerprint(file));
            }
            Action::ApplySettings { settings } => {
                state.settings = Some(fingerprint(settings.as_ref()));
            }
            Action::StartWorkload { workload } | Action::ReplaceWorkload { workload } => {
                state.workloads.insert(
                    workload.name.clone().unwrap_or_default(),
                    ObservedWorkload {
                        fingerprint: Some(fingerprint(workload.as_ref())),
                        phase: WorkloadPhase::Running,
                    },
                );
            }
            Action::SetHeartbeat { heartbeat } => state.heartbeat = heartbeat.clone(),
            Action::UpgradeOs { os } => state.os = os_target(os),
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(name: &str, image: &str) -> wire::Workload {
        wire::Workload {
            name: Some(name.into()),
            specification: Some(format!("containers:\n- image: {image}\n")),
            ..Default::default()
        }
    }

    fn config(workloads: Vec<wire::Workload>, os: Option<wire::OsInformation>) -> RenderedConfig {
        RenderedConfig::from_message(wire::DeviceConfigurationMessage {
            device_id: Some("d".into()),
            configuration: Some(wire::DeviceConfiguration {
                heartbeat: Some(wire::HeartbeatConfiguration {
                    period_seconds: Some(30),
                    ..Default::default()
                }),
                os,
                files: Some(vec![wire::FileInfo {
                    path: "/etc/a".into(),
                    content: "a".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            workloads: Some(workloads),
            secrets: Some(vec![wire::Secret {
                name: Some("s".into()),
                data: Some("{}".into()),
                ..Default::default()
            }]),
            ..Default::default()
        })
    }

    #[test]
    fn actions_come_in_order_and_the_plan_converges() {
        let current = config(vec![workload("old", "a"), workload("kept", "a")], None);
        let mut desired = config(vec![workload("kept", "b"), workload("new", "a")], None);
        if let Some(files) = desired
            .message
            .configuration
            .as_mut()
            .and_then(|c| c.files.as_mut())
        {
            files[0].content = "changed".into();
        }
        let desired = RenderedConfig::from_message(desired.message);
        let observed = ObservedState::from_config(&current);
        let actions = plan(&current, &desired, &observed);
        let kinds: Vec<&str> = actions
            .iter()
            .map(|a| match a {
                Action::RemoveWorkload { .. } => "remove",
                Action::WriteFile { .. } => "file",
                Action::StartWorkload { .. } => "start",
                Action::ReplaceWorkload { .. } => "replace",
                _ => "other",
            })
            .collect();
        // Within a group, by name: "kept" before "new".
        assert_eq!(kinds, ["remove", "file", "replace", "start"]);
        let after = apply_to(&observed, &actions);
        assert_eq!(after, ObservedState::from_config(&desired));
        assert!(plan(&desired, &desired, &after).is_empty());
    }

    #[test]
    fn os_upgrade_is_last_and_honours_automatically_upgrade() {
        let current = config(vec![], None);
        let os = |auto| wire::OsInformation {
            commit_id: Some("c2".into()),
            automatically_upgrade: Some(auto),
            ..Default::default()
        };
        let observed = ObservedState::from_config(&current);
        let manual = config(vec![workload("w", "a")], Some(os(false)));
        let actions = plan(&current, &manual, &observed);
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::UpgradeOs { .. }))
        );
        let automatic = config(vec![workload("w", "a")], Some(os(true)));
        let actions = plan(&current, &automatic, &observed);
        assert!(
            matches!(actions.last(), Some(Action::UpgradeOs { os }) if os.commit_id.as_deref() == Some("c2"))
        );
    }

    #[test]
    fn a_changed_secret_restarts_the_workloads_reading_it() {
        let reader = wire::Workload {
            name: Some("reader".into()),
            specification: Some(
                "containers:\n- name: main\n  image: a\n  envFrom:\n  - secretRef:\n      name: s\n"
                    .into(),
            ),
            ..Default::default()
        };
        let current = config(vec![reader.clone(), workload("other", "a")], None);
        let mut message = current.message.clone();
        if let Some(secrets) = message.secrets.as_mut() {
            secrets[0].data = Some("{\"k\":\"bmV3\"}".into());
        }
        let desired = RenderedConfig::from_message(message);
        let observed = ObservedState::from_config(&current);
        let actions = plan(&current, &desired, &observed);
        let replaced: Vec<&str> = actions
            .iter()
            .filter_map(|a| match a {
                Action::ReplaceWorkload { workload } => workload.name.as_deref(),
                _ => None,
            })
            .collect();
        assert_eq!(replaced, ["reader"]);
        assert_eq!(
            secrets_read_by(&reader).into_iter().collect::<Vec<_>>(),
            ["s"]
        );
        let after = apply_to(&observed, &actions);
        assert!(plan(&desired, &desired, &after).is_empty());
    }

    #[test]
    fn foreign_workloads_are_left_alone() {
        let current = config(vec![], None);
        let mut observed = ObservedState::from_config(&current);
        observed.workloads.insert(
            "someone-elses".into(),
            ObservedWorkload {
                fingerprint: None,
                phase: WorkloadPhase::Running,
            },
        );
        assert!(plan(&current, &current, &observed).is_empty());
    }

    #[test]
    fn rollback_returns_to_the_last_good_config() {
        let good = config(vec![workload("w", "a")], None);
        let bad = config(vec![workload("w", "b"), workload("x", "a")], None);
        let mut observed = ObservedState::from_config(&good);
        // The bad config was half applied: x started, w not yet replaced.
        observed = apply_to(
            &observed,
            &[Action::StartWorkload {
                workload: Box::new(workload("x", "a")),
            }],
        );
        let back = rollback_plan(&bad, &good, &observed);
        assert_eq!(back, vec![Action::RemoveWorkload { name: "x".into() }]);
        assert_eq!(
            apply_to(&observed, &back),
            ObservedState::from_config(&good)
        );
    }
}
