//! A vendor's way of running workloads: each container of a workload becomes a
//! systemd-style unit file (`<workload>-<container>.service`) in a units directory,
//! and the agent starts its `ExecStart` as a plain host process, with the unit's
//! environment and its output appended to `<unit>.log`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use async_trait::async_trait;
use flotta_agent_lib::{RuntimeError, WorkloadRuntime, WorkloadState};
use flotta_core::model::PodSpec;
use flotta_core::reconcile::WorkloadPhase;
use flotta_core::wire::Workload;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

/// One container as a unit.
struct Unit {
    file: PathBuf,
    child: Child,
}

/// A workload: one unit per container. (Which definition it was applied from is
/// the agent's bookkeeping, not the runtime's.)
struct Running {
    units: Vec<Unit>,
}

/// Runs workloads as unit files plus processes.
pub struct UnitRuntime {
    dir: PathBuf,
    workloads: Mutex<BTreeMap<String, Running>>,
}

impl UnitRuntime {
    /// A runtime keeping its unit files (and logs) in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            workloads: Mutex::new(BTreeMap::new()),
        }
    }
}

/// What one container runs.
struct ExecSpec {
    unit_name: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
}

fn failed(name: &str, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::ApplyFailed {
        name: name.to_owned(),
        reason: reason.into(),
        source: None,
    }
}

/// Reads the workload's pod specification into one [`ExecSpec`] per container.
fn exec_specs(name: &str, workload: &Workload) -> Result<Vec<ExecSpec>, RuntimeError> {
    let text = workload
        .specification
        .as_deref()
        .ok_or_else(|| failed(name, "no pod specification"))?;
    let pod: PodSpec = serde_yaml_ng::from_str(text)
        .map_err(|e| failed(name, format!("the pod specification does not parse: {e}")))?;
    pod.containers
        .iter()
        .map(|container| {
            let mut argv = container.command.clone().unwrap_or_default();
            argv.extend(container.args.clone().unwrap_or_default());
            if argv.is_empty() {
                return Err(failed(
                    name,
                    format!(
                        "container {} has no command: this agent runs host processes, not images",
                        container.name
                    ),
                ));
            }
            let env = container
                .env
                .iter()
                .flatten()
                .filter_map(|v| Some((v.name.clone(), v.value.clone()?)))
                .collect();
            Ok(ExecSpec {
                unit_name: format!("{name}-{}.service", container.name),
                argv,
                env,
            })
        })
        .collect()
}

/// The unit file text; `ExecStart` quotes each argument as systemd reads it.
fn unit_file(workload: &str, spec: &ExecSpec) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let exec: Vec<String> = spec.argv.iter().map(|a| quote(a)).collect();
    let mut text = format!(
        "[Unit]\nDescription=flotta workload {workload}\n\n[Service]\nExecStart={}\n",
        exec.join(" ")
    );
    for (key, value) in &spec.env {
        text.push_str(&format!(
            "Environment={}\n",
            quote(&format!("{key}={value}"))
        ));
    }
    text.push_str("Restart=no\n");
    text
}

async fn write_atomically(path: &Path, content: &str) -> std::io::Result<()> {
    let temp = path.with_extension("tmp");
    tokio::fs::write(&temp, content).await?;
    tokio::fs::rename(&temp, path).await
}

async fn stop(running: Running) {
    for mut unit in running.units {
        // Already exited is fine.
        let _ = unit.child.kill().await;
        let _ = tokio::fs::remove_file(&unit.file).await;
    }
}

impl UnitRuntime {
    async fn start(&self, name: &str, spec: &ExecSpec) -> Result<Unit, RuntimeError> {
        let file = self.dir.join(&spec.unit_name);
        write_atomically(&file, &unit_file(name, spec))
            .await
            .map_err(|e| failed(name, format!("writing {}: {e}", file.display())))?;
        let log_path = self.dir.join(format!("{}.log", spec.unit_name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| failed(name, format!("opening {}: {e}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(|e| failed(name, format!("opening {}: {e}", log_path.display())))?;
        let (program, args) = spec
            .argv
            .split_first()
            .ok_or_else(|| failed(name, "empty command"))?;
        let child = Command::new(program)
            .args(args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failed(name, format!("starting {program}: {e}")))?;
        tracing::info!(unit = %spec.unit_name, pid = child.id(), "unit started");
        Ok(Unit { file, child })
    }
}

#[async_trait]
impl WorkloadRuntime for UnitRuntime {
    async fn apply(&self, workload: &Workload) -> Result<(), RuntimeError> {
        let name = workload
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or(RuntimeError::UnnamedWorkload)?;
        let specs = exec_specs(&name, workload)?;
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| failed(&name, format!("creating {}: {e}", self.dir.display())))?;
        let mut workloads = self.workloads.lock().await;
        if let Some(old) = workloads.remove(&name) {
            stop(old).await;
        }
        let mut units = Vec::new();
        for spec in &specs {
            match self.start(&name, spec).await {
                Ok(unit) => units.push(unit),
                Err(error) => {
                    // The contract: no half-started copy stays behind.
                    stop(Running { units }).await;
                    return Err(error);
                }
            }
        }
        workloads.insert(name, Running { units });
        Ok(())
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        let removed = self.workloads.lock().await.remove(name);
        if let Some(running) = removed {
            stop(running).await;
            tracing::info!(workload = name, "units stopped and removed");
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<WorkloadState>, RuntimeError> {
        let mut workloads = self.workloads.lock().await;
        Ok(workloads
            .iter_mut()
            .map(|(name, running)| {
                let exited = running
                    .units
                    .iter_mut()
                    .any(|u| matches!(u.child.try_wait(), Ok(Some(_)) | Err(_)));
                WorkloadState {
                    name: name.clone(),
                    phase: if exited {
                        WorkloadPhase::Failed
                    } else {
                        WorkloadPhase::Running
                    },
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(spec: &str) -> Workload {
        Workload {
            name: Some("web".into()),
            specification: Some(spec.into()),
            ..Default::default()
        }
    }

    #[test]
    fn containers_become_units_with_their_command_and_environment() {
        let specs = exec_specs(
            "web",
            &workload(
                "containers:\n- name: main\n  image: ignored\n  command: [sleep]\n  args: [\"30\"]\n  env:\n  - {name: MODE, value: \"a b\"}\n",
            ),
        )
        .expect("specs");
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].unit_name, "web-main.service");
        assert_eq!(specs[0].argv, ["sleep", "30"]);
        let text = unit_file("web", &specs[0]);
        assert!(text.contains("ExecStart=\"sleep\" \"30\"\n"), "{text}");
        assert!(text.contains("Environment=\"MODE=a b\"\n"), "{text}");
    }

    #[test]
    fn a_container_without_a_command_is_refused() {
        let error = exec_specs(
            "web",
            &workload("containers:\n- name: main\n  image: nginx\n"),
        )
        .err()
        .expect("refused");
        assert!(error.to_string().contains("no command"), "{error}");
    }

    #[tokio::test]
    async fn apply_starts_a_process_and_remove_stops_it() {
        let dir = std::env::temp_dir().join(format!("custom-agent-test-{}", std::process::id()));
        let runtime = UnitRuntime::new(&dir);
        runtime
            .apply(&workload(
                "containers:\n- name: main\n  image: x\n  command: [sleep, \"30\"]\n",
            ))
            .await
            .expect("applied");
        let listed = runtime.list().await.expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].phase, WorkloadPhase::Running);
        assert!(dir.join("web-main.service").exists());
        runtime.remove("web").await.expect("removed");
        assert!(runtime.list().await.expect("list").is_empty());
        assert!(!dir.join("web-main.service").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
