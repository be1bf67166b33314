//! External commands (podman, rpm-ostree, bootc) run behind a small trait, so unit
//! tests can check the exact argument vectors without the programs installed.

use std::fmt::Debug;
use std::path::Path;
use std::process::Stdio;

use async_trait::async_trait;

/// What a finished command left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CommandOutput {
    /// Whether it exited with status 0.
    pub success: bool,
    /// Its exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// Everything it wrote to standard output.
    pub stdout: Vec<u8>,
    /// Everything it wrote to standard error.
    pub stderr: Vec<u8>,
}

impl CommandOutput {
    /// Standard error as text, trimmed, for error messages.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_owned()
    }

    /// "exit status N: <stderr>" for error messages.
    pub fn failure(&self) -> String {
        let status = match self.code {
            Some(code) => format!("exit status {code}"),
            None => "killed by a signal".to_owned(),
        };
        let stderr = self.stderr_text();
        if stderr.is_empty() {
            status
        } else {
            format!("{status}: {stderr}")
        }
    }
}

/// Runs a program to completion and collects its output.
#[async_trait]
pub(crate) trait CommandRunner: Send + Sync + Debug {
    /// Runs `program` with `args`, standard input closed.
    async fn run(&self, program: &Path, args: &[String]) -> std::io::Result<CommandOutput>;
}

/// Runs commands on the host.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct HostCommands;

#[async_trait]
impl CommandRunner for HostCommands {
    async fn run(&self, program: &Path, args: &[String]) -> std::io::Result<CommandOutput> {
        let output = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await?;
        Ok(CommandOutput {
            success: output.status.success(),
            code: output.status.code(),
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }
}

/// A runner that records every call and answers from a script: for unit tests of
/// the argument vectors.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct RecordedCommands {
    calls: std::sync::Mutex<Vec<Vec<String>>>,
    replies: std::sync::Mutex<Vec<(Vec<String>, CommandOutput)>>,
}

#[cfg(test)]
impl RecordedCommands {
    /// Answers calls whose arguments start with `prefix` with `output` (the latest
    /// matching reply wins); other calls succeed with no output.
    pub fn reply(&self, prefix: &[&str], output: CommandOutput) {
        self.replies
            .lock()
            .expect("replies")
            .push((prefix.iter().map(|s| (*s).to_owned()).collect(), output));
    }

    /// Answers calls starting with `prefix` with success and `stdout`.
    pub fn reply_stdout(&self, prefix: &[&str], stdout: &str) {
        self.reply(
            prefix,
            CommandOutput {
                success: true,
                code: Some(0),
                stdout: stdout.as_bytes().to_vec(),
                stderr: Vec::new(),
            },
        );
    }

    /// Every call so far: program then arguments.
    pub fn calls(&self) -> Vec<Vec<String>> {
        self.calls.lock().expect("calls").clone()
    }
}

#[cfg(test)]
#[async_trait]
impl CommandRunner for RecordedCommands {
    async fn run(&self, program: &Path, args: &[String]) -> std::io::Result<CommandOutput> {
        let mut call = vec![program.display().to_string()];
        call.extend(args.iter().cloned());
        self.calls.lock().expect("calls").push(call);
        let replies = self.replies.lock().expect("replies");
        Ok(replies
            .iter()
            .rev()
            .find(|(prefix, _)| args.starts_with(prefix))
            .map(|(_, output)| output.clone())
            .unwrap_or(CommandOutput {
                success: true,
                code: Some(0),
                ..Default::default()
            }))
    }
}
