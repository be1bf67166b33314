//! Running Ansible playbooks on the device: the [`PlaybookRunner`] trait and
//! [`AnsiblePlaybook`], which runs `ansible-playbook` against the device itself
//! (local connection).
//!
//! Which executions a device runs, and what its reports mean, is decided by
//! [`flotta_core::ansible`]; the agent's `ansible` room polls for them while the
//! configuration carries `ansible-manager`, runs each once per revision (with its
//! attempts), and reports `Deploying`, `Running`, then `SuccessfullyCompleted` or
//! `CompletedWithError` with the recap or the reason.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncReadExt;

/// One playbook to run, as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaybookRun {
    /// The execution's name (`<device>-<edgeconfig>`).
    pub name: String,
    /// The playbook's YAML.
    pub playbook: String,
    /// How long the run may take; it is stopped after it.
    pub timeout: Option<Duration>,
    /// Check mode (`--check`).
    pub check: bool,
    /// Privilege escalation (`--become`), with its method and user.
    pub become_: bool,
    /// `sudo` or `su`.
    pub become_method: Option<String>,
    /// The user to become.
    pub become_user: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaybookOutcome {
    /// Whether every task succeeded.
    pub succeeded: bool,
    /// The recap (`localhost: ok=2 changed=1 ...`) on success; why it failed
    /// otherwise (the failed task and its message, the timeout, or the error).
    pub message: String,
}

impl PlaybookOutcome {
    fn failed(message: impl Into<String>) -> Self {
        Self {
            succeeded: false,
            message: message.into(),
        }
    }
}

/// Runs playbooks. Implement it to run them another way (ansible-runner, a test
/// double); [`AnsiblePlaybook`] is the default.
#[async_trait]
pub trait PlaybookRunner: Send + Sync {
    /// Runs `run` to its end, using `workdir` (created, private to the agent) for
    /// its files.
    async fn run(&self, run: &PlaybookRun, workdir: &Path) -> PlaybookOutcome;
}

/// Runs `ansible-playbook` (from ansible-core) on the device itself: the playbook
/// written to the work directory, an inventory of `localhost` with the local
/// connection (`127.0.0.1` is ansible's implicit localhost), no colours, no retry
/// files, the process group stopped at the timeout.
#[derive(Debug, Clone)]
pub struct AnsiblePlaybook {
    command: PathBuf,
}

impl Default for AnsiblePlaybook {
    fn default() -> Self {
        Self::new("ansible-playbook")
    }
}

/// Most bytes of output kept from a run (the recap is at its end).
const MAX_OUTPUT: usize = 1024 * 1024;

impl AnsiblePlaybook {
    /// Runs `command` (a path, or a name looked up in `PATH`).
    pub fn new(command: impl Into<PathBuf>) -> Self {
        Self {
            command: command.into(),
        }
    }

    /// The arguments for `run`, the playbook at `playbook` and the inventory at
    /// `inventory`.
    fn arguments(run: &PlaybookRun, playbook: &Path, inventory: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["-i".into(), inventory.into()];
        if run.check {
            args.push("--check".into());
        }
        if run.become_ {
            args.push("--become".into());
            if let Some(method) = &run.become_method {
                args.push("--become-method".into());
                args.push(method.into());
            }
            if let Some(user) = &run.become_user {
                args.push("--become-user".into());
                args.push(user.into());
            }
        }
        if let Some(timeout) = run.timeout {
            args.push("--timeout".into());
            args.push(timeout.as_secs().max(1).to_string().into());
        }
        args.push(playbook.into());
        args
    }
}

#[async_trait]
impl PlaybookRunner for AnsiblePlaybook {
    async fn run(&self, run: &PlaybookRun, workdir: &Path) -> PlaybookOutcome {
        let playbook = workdir.join("playbook.yml");
        let inventory = workdir.join("inventory.ini");
        let local_temp = workdir.join("tmp");
        let written = async {
            // Private: a playbook may carry secrets.
            tokio::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&local_temp)
                .await?;
            tokio::fs::write(&playbook, &run.playbook).await?;
            tokio::fs::write(
                &inventory,
                "localhost ansible_connection=local ansible_python_interpreter=\"{{ ansible_playbook_python }}\"\n",
            )
            .await
        };
        if let Err(error) = written.await {
            return PlaybookOutcome::failed(format!(
                "cannot write the playbook under {}: {error}",
                workdir.display()
            ));
        }
        let mut command = tokio::process::Command::new(&self.command);
        command
            .args(Self::arguments(run, &playbook, &inventory))
            .current_dir(workdir)
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_FORCE_COLOR", "0")
            .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
            .env("ANSIBLE_STDOUT_CALLBACK", "default")
            .env("ANSIBLE_LOCAL_TEMP", &local_temp)
            .env("ANSIBLE_HOST_KEY_CHECKING", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return PlaybookOutcome::failed(format!(
                    "{} not found: install ansible-core on the device (or set the agent's ansible-playbook path)",
                    self.command.display()
                ));
            }
            Err(error) => {
                return PlaybookOutcome::failed(format!(
                    "cannot start {}: {error}",
                    self.command.display()
                ));
            }
        };
        let pid = child.id();
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let read = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let read_out = async {
                if let Some(stdout) = stdout.as_mut() {
                    let _ = stdout.take(MAX_OUTPUT as u64).read_to_end(&mut out).await;
                }
            };
            let read_err = async {
                if let Some(stderr) = stderr.as_mut() {
                    let _ = stderr.take(MAX_OUTPUT as u64).read_to_end(&mut err).await;
                }
            };
            tokio::join!(read_out, read_err);
            let status = child.wait().await;
            (status, out, err)
        };
        let finished = match run.timeout {
            Some(limit) => tokio::time::timeout(limit, read).await.ok(),
            None => Some(read.await),
        };
        let Some((status, stdout, stderr)) = finished else {
            let pid = pid
                .and_then(|p| i32::try_from(p).ok())
                .and_then(rustix::process::Pid::from_raw);
            if let Some(pid) = pid {
                // ESRCH (already gone) is what we want anyway.
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let limit = run.timeout.unwrap_or_default().as_secs();
            return PlaybookOutcome::failed(format!(
                "timed out after {limit}s: ansible-playbook was stopped"
            ));
        };
        let stdout = String::from_utf8_lossy(&stdout);
        let stderr = String::from_utf8_lossy(&stderr);
        match status {
            Ok(status) if status.success() => PlaybookOutcome {
                succeeded: true,
                message: recap(&stdout).unwrap_or_else(|| "completed".to_owned()),
            },
            Ok(status) => PlaybookOutcome::failed(failure(&stdout, &stderr, status.code())),
            Err(error) => PlaybookOutcome::failed(format!("ansible-playbook was lost: {error}")),
        }
    }
}

/// The `PLAY RECAP` of ansible's default output, one host per `; `, spaces
/// collapsed: `localhost: ok=2 changed=1 unreachable=0 failed=0 ...`.
pub fn recap(output: &str) -> Option<String> {
    let start = output.rfind("PLAY RECAP")?;
    let hosts: Vec<String> = output[start..]
        .lines()
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .map(|line| {
            let (host, counts) = line.split_once(':').unwrap_or(("", line));
            let counts = counts.split_whitespace().collect::<Vec<_>>().join(" ");
            format!("{}: {counts}", host.trim())
        })
        .collect();
    (!hosts.is_empty()).then(|| hosts.join("; "))
}

/// Why a run failed, from its output: the first failed task (`fatal:` or
/// `failed:` line) with its name and its result's `msg`, or ansible's own error
/// (`ERROR! ...`), or the exit code and the last lines of standard error.
pub fn failure(stdout: &str, stderr: &str, code: Option<i32>) -> String {
    let mut task = None;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("TASK [") {
            task = rest.split_once(']').map(|(name, _)| name.to_owned());
        }
        let is_failure = line.starts_with("fatal: [") || line.starts_with("failed: [");
        if !is_failure {
            continue;
        }
        let host = line
            .split_once('[')
            .and_then(|(_, rest)| rest.split_once(']'))
            .map_or("", |(host, _)| host);
        let message = line
            .split_once("=> ")
            .and_then(|(_, json)| serde_json::from_str::<serde_json::Value>(json).ok())
            .and_then(|result| {
                result
                    .get("msg")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| line.to_owned());
        let recap = recap(stdout).map(|r| format!(" ({r})")).unwrap_or_default();
        return match &task {
            Some(task) => format!("task \"{task}\" failed on {host}: {message}{recap}"),
            None => format!("failed on {host}: {message}{recap}"),
        };
    }
    let error = stderr
        .lines()
        .chain(stdout.lines())
        .find(|line| line.starts_with("ERROR!"));
    if let Some(error) = error {
        return error.to_owned();
    }
    let status = code.map_or("killed by a signal".to_owned(), |c| {
        format!("exit status {c}")
    });
    let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
    if tail.is_empty() {
        format!("ansible-playbook failed: {status}")
    } else {
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("ansible-playbook failed: {status}: {}", tail.join(" | "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUCCESS: &str = "\nPLAY [Hello] *****\n\nTASK [Create a file] *****\nchanged: [localhost]\n\nPLAY RECAP *********\nlocalhost                  : ok=1    changed=1    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0   \n\n";

    const FAILED: &str = "\nPLAY [Hello] *****\n\nTASK [Write where it may not] *****\nfatal: [localhost]: FAILED! => {\"changed\": false, \"msg\": \"Destination directory /proc/nope does not exist\"}\n\nPLAY RECAP *********\nlocalhost                  : ok=0    changed=0    unreachable=0    failed=1    skipped=0    rescued=0    ignored=0   \n";

    #[test]
    fn the_recap_is_the_summary() {
        assert_eq!(
            recap(SUCCESS).as_deref(),
            Some("localhost: ok=1 changed=1 unreachable=0 failed=0 skipped=0 rescued=0 ignored=0")
        );
        assert_eq!(recap("no recap here"), None);
    }

    #[test]
    fn a_failure_names_the_task_the_host_and_the_message() {
        let why = failure(FAILED, "", Some(2));
        assert!(
            why.starts_with("task \"Write where it may not\" failed on localhost: Destination directory /proc/nope does not exist"),
            "{why}"
        );
        assert!(why.contains("failed=1"), "{why}");
        let syntax = failure(
            "",
            "ERROR! 'copyy' is not a valid attribute for a Task\n\nThe error appears to be in ...",
            Some(4),
        );
        assert!(syntax.starts_with("ERROR! 'copyy'"), "{syntax}");
        assert_eq!(
            failure("", "boom\n", Some(1)),
            "ansible-playbook failed: exit status 1: boom"
        );
    }

    #[test]
    fn arguments_carry_the_options() {
        let run = PlaybookRun {
            name: "d-c".into(),
            playbook: String::new(),
            timeout: Some(Duration::from_secs(30)),
            check: true,
            become_: true,
            become_method: Some("sudo".into()),
            become_user: Some("root".into()),
        };
        let args = AnsiblePlaybook::arguments(&run, Path::new("/w/p.yml"), Path::new("/w/i.ini"));
        let args: Vec<String> = args
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-i",
                "/w/i.ini",
                "--check",
                "--become",
                "--become-method",
                "sudo",
                "--become-user",
                "root",
                "--timeout",
                "30",
                "/w/p.yml"
            ]
        );
    }
}
