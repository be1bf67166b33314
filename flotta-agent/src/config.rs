//! `agent.toml`: what the reference agent reads at start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Which workload runtime the agent uses (`runtime = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Each container's command runs as a supervised host process (`[process]`).
    Process,
    /// `podman kube play` of each workload's pod (`[podman]`).
    Podman,
    /// Workloads kept in memory and reported running (tests, simulations).
    Memory,
}

/// Which OS updater the agent uses (`os = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OsKind {
    /// The agent does not manage the OS.
    None,
    /// `rpm-ostree` deployments.
    RpmOstree,
    /// `bootc` images.
    Bootc,
}

/// `[process]`: options of the process runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSection {
    /// Log and pid files, one subdirectory per workload; `<state_dir>/workloads`
    /// when absent.
    pub log_dir: Option<PathBuf>,
    /// Seconds before the first restart of an exited process.
    pub initial_backoff_seconds: Option<u64>,
    /// Longest wait between restarts, seconds.
    pub max_backoff_seconds: Option<u64>,
    /// Seconds between SIGTERM and SIGKILL when stopping a workload.
    pub stop_grace_seconds: Option<u64>,
}

/// `[podman]`: options of the podman runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodmanSection {
    /// The podman program; `podman` (looked up in `PATH`) when absent.
    pub binary: Option<PathBuf>,
    /// Arguments put before every podman subcommand (`--remote`, `--url ...`,
    /// `--root ...`).
    #[serde(default)]
    pub global_args: Vec<String>,
    /// Registry credentials file passed as `--authfile` to `podman kube play`.
    pub authfile: Option<PathBuf>,
    /// Where the generated kube YAML files go; `<state_dir>/podman` when absent.
    pub manifest_dir: Option<PathBuf>,
    /// Whether podman runs rootless (as the agent's non-root user) or rootful (as
    /// root); checked against the agent's user at start. Unchecked when absent.
    pub rootless: Option<bool>,
}

/// `[os_health]`: the checks after a boot into a new OS deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsHealthSection {
    /// Greenboot check roots (each with `required.d` and `wanted.d`);
    /// `/usr/lib/greenboot/check` and `/etc/greenboot/check` when absent.
    pub greenboot_dirs: Option<Vec<PathBuf>>,
    /// Shell commands that must exit 0.
    #[serde(default)]
    pub commands: Vec<String>,
    /// `http://` URLs that must answer 2xx.
    #[serde(default)]
    pub urls: Vec<String>,
    /// systemd units that must be active.
    #[serde(default)]
    pub units: Vec<String>,
    /// Seconds between rounds of checks (default 5).
    pub interval_seconds: Option<u64>,
}

/// The agent's configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    /// Edge API base URL, `https://host:port`.
    pub server: String,
    /// CA certificate of the server, PEM file.
    pub ca: PathBuf,
    /// Fleet-wide registration certificate, PEM file.
    pub registration_certificate: PathBuf,
    /// Key of the registration certificate, PEM file.
    pub registration_key: PathBuf,
    /// State directory (key, certificate, configurations).
    pub state_dir: PathBuf,
    /// Device id; the host name when absent.
    pub device_id: Option<String>,
    /// Namespace to join.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Labels reported at enrolment.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Workload runtime.
    #[serde(default = "default_runtime")]
    pub runtime: RuntimeKind,
    /// Options of the process runtime.
    pub process: Option<ProcessSection>,
    /// Options of the podman runtime.
    pub podman: Option<PodmanSection>,
    /// OS updater.
    #[serde(default = "default_os")]
    pub os: OsKind,
    /// Health checks after an OS update.
    pub os_health: Option<OsHealthSection>,
    /// Where the `rpm-ostree` backend writes the OSTree remote of a target's
    /// `hostedObjectsURL` (absolute); `/etc/ostree/remotes.d` when absent.
    pub ostree_remotes_dir: Option<PathBuf>,
    /// MiB that must be free on the state directory's file system before a new
    /// version is prefetched; unchecked when absent.
    pub prefetch_min_free_mib: Option<u64>,
    /// Heartbeat period until the server's configuration sets one.
    pub heartbeat_period_seconds: Option<u64>,
    /// Directories the `spec.files` overlay may write under (absolute);
    /// `/etc/flotta/files` and `/var/lib/flotta/files` when absent.
    pub file_roots: Option<Vec<PathBuf>>,
    /// The `ansible-playbook` that runs playbook executions (a path, or a name
    /// looked up in `PATH`); `ansible-playbook` when absent.
    pub ansible_playbook: Option<PathBuf>,
}

fn default_namespace() -> String {
    "default".into()
}

fn default_runtime() -> RuntimeKind {
    RuntimeKind::Process
}

fn default_os() -> OsKind {
    OsKind::None
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file could not be read.
    #[error("could not read {what} {path}")]
    Read {
        /// Which setting names the file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML or has a wrong, missing or unknown
    /// key.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line (from 1) the problem is on, when the parser knows it.
        line: Option<usize>,
        /// What is wrong.
        message: String,
        /// The parser's error.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A key has a value the agent cannot use.
    #[error("{}: {key}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key, as written in the file (`podman.rootless`).
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No device id configured and the host name is unreadable.
    #[error("no device_id configured and the host name could not be read")]
    NoDeviceId,
}

impl AgentFile {
    /// Parses `text`, read from `path` (for errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let file: Self = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            line: source
                .span()
                .and_then(|span| text.get(..span.start))
                .map(|before| before.matches('\n').count() + 1),
            message: source.message().to_owned(),
            source: Box::new(source),
        })?;
        file.check(path)?;
        Ok(file)
    }

    /// Checks what the types alone do not.
    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                key,
                reason: reason.to_owned(),
            })
        };
        if !self.server.starts_with("https://") {
            return invalid(
                "server",
                "the Edge API is served over mutual TLS: use https://host:port",
            );
        }
        if self.heartbeat_period_seconds == Some(0) {
            return invalid("heartbeat_period_seconds", "must be at least 1");
        }
        if self.process.is_some() && self.runtime != RuntimeKind::Process {
            return invalid(
                "process",
                "options of the process runtime, but runtime is not \"process\"",
            );
        }
        if self.podman.is_some() && self.runtime != RuntimeKind::Podman {
            return invalid(
                "podman",
                "options of the podman runtime, but runtime is not \"podman\"",
            );
        }
        if let Some(dir) = &self.ostree_remotes_dir {
            if self.os != OsKind::RpmOstree {
                return invalid(
                    "ostree_remotes_dir",
                    "used by the rpm-ostree backend only, but os is not \"rpm-ostree\"",
                );
            }
            if !dir.is_absolute() {
                return invalid(
                    "ostree_remotes_dir",
                    &format!("{} is not an absolute path", dir.display()),
                );
            }
        }
        if let Some(health) = &self.os_health {
            if health.interval_seconds == Some(0) {
                return invalid("os_health.interval_seconds", "must be at least 1");
            }
            if let Some(url) = health.urls.iter().find(|u| !u.starts_with("http://")) {
                return invalid(
                    "os_health.urls",
                    &format!(
                        "{url:?} is not an http:// URL (https health URLs are not supported: the agent holds no trust store for them)"
                    ),
                );
            }
            if let Some(dir) = health
                .greenboot_dirs
                .iter()
                .flatten()
                .find(|d| !d.is_absolute())
            {
                return invalid(
                    "os_health.greenboot_dirs",
                    &format!("{} is not an absolute path", dir.display()),
                );
            }
        }
        if let Some(process) = &self.process {
            if process.initial_backoff_seconds == Some(0) {
                return invalid("process.initial_backoff_seconds", "must be at least 1");
            }
            if let (Some(initial), Some(max)) =
                (process.initial_backoff_seconds, process.max_backoff_seconds)
                && max < initial
            {
                return invalid(
                    "process.max_backoff_seconds",
                    "must not be less than process.initial_backoff_seconds",
                );
            }
        }
        Ok(())
    }

    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = read(path, "configuration file")?;
        Self::parse(&text, path)
    }

    /// The device id: configured, or the host name.
    pub fn device_id(&self) -> Result<String, ConfigError> {
        if let Some(id) = &self.device_id {
            return Ok(id.clone());
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .ok_or(ConfigError::NoDeviceId)
    }
}

/// Reads a text file named by the setting `what`.
pub fn read(path: &Path, what: &'static str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
server = "https://flotta.example:8043"
ca = "/etc/flotta/ca.crt"
registration_certificate = "/etc/flotta/register.crt"
registration_key = "/etc/flotta/register.key"
state_dir = "/var/lib/flotta"
"#;

    fn parse(text: &str) -> Result<AgentFile, ConfigError> {
        AgentFile::parse(text, Path::new("agent.toml"))
    }

    #[test]
    fn a_minimal_file_gets_defaults() {
        let file = parse(MINIMAL).expect("valid");
        assert_eq!(file.namespace, "default");
        assert_eq!(file.runtime, RuntimeKind::Process);
        assert_eq!(file.os, OsKind::None);
        assert_eq!(file.process, None);
        assert_eq!(file.podman, None);
        assert!(file.labels.is_empty());
        assert_eq!(file.device_id, None);
        assert_eq!(file.os_health, None);
    }

    #[test]
    fn os_health_checks_are_read_and_checked() {
        let text = format!(
            "{MINIMAL}os = \"bootc\"\n[os_health]\ngreenboot_dirs = [\"/etc/greenboot/check\"]\ncommands = [\"true\"]\nurls = [\"http://127.0.0.1:8080/healthz\"]\nunits = [\"app.service\"]\ninterval_seconds = 2\n"
        );
        let health = parse(&text).expect("valid").os_health.expect("section");
        assert_eq!(health.units, ["app.service"]);
        assert_eq!(health.interval_seconds, Some(2));
        for (section, expected) in [
            ("urls = [\"ftp://x\"]", "os_health.urls"),
            ("interval_seconds = 0", "os_health.interval_seconds"),
            ("greenboot_dirs = [\"check\"]", "os_health.greenboot_dirs"),
            ("script = \"x\"", "unknown field `script`"),
        ] {
            let text = format!("{MINIMAL}[os_health]\n{section}\n");
            let error = parse(&text).expect_err(section).to_string();
            assert!(error.contains(expected), "{section}: {error}");
        }
    }

    #[test]
    fn labels_and_device_id_are_read() {
        let text = format!("{MINIMAL}device_id = \"cam-1\"\n[labels]\nsite = \"north\"\n");
        let file = parse(&text).expect("valid");
        assert_eq!(file.device_id().expect("id"), "cam-1");
        assert_eq!(file.labels.get("site").map(String::as_str), Some("north"));
    }

    #[test]
    fn runtime_and_os_choices_with_their_options_are_read() {
        let text = format!(
            "{MINIMAL}runtime = \"process\"\nos = \"rpm-ostree\"\n[process]\nlog_dir = \"/var/log/flotta\"\ninitial_backoff_seconds = 2\nmax_backoff_seconds = 60\nstop_grace_seconds = 5\n"
        );
        let file = parse(&text).expect("valid");
        assert_eq!(file.os, OsKind::RpmOstree);
        assert_eq!(
            file.process,
            Some(ProcessSection {
                log_dir: Some("/var/log/flotta".into()),
                initial_backoff_seconds: Some(2),
                max_backoff_seconds: Some(60),
                stop_grace_seconds: Some(5),
            })
        );

        let text = format!(
            "{MINIMAL}runtime = \"podman\"\nos = \"bootc\"\n[podman]\nbinary = \"/usr/bin/podman\"\nglobal_args = [\"--remote\"]\nauthfile = \"/etc/flotta/auth.json\"\nrootless = false\n"
        );
        let file = parse(&text).expect("valid");
        assert_eq!(file.runtime, RuntimeKind::Podman);
        assert_eq!(file.os, OsKind::Bootc);
        let podman = file.podman.expect("podman section");
        assert_eq!(podman.binary, Some("/usr/bin/podman".into()));
        assert_eq!(podman.global_args, ["--remote"]);
        assert_eq!(podman.authfile, Some("/etc/flotta/auth.json".into()));
        assert_eq!(podman.rootless, Some(false));
        assert_eq!(podman.manifest_dir, None);

        let file =
            parse(&format!("{MINIMAL}runtime = \"memory\"\nos = \"none\"\n")).expect("valid");
        assert_eq!(file.runtime, RuntimeKind::Memory);
    }

    fn message(error: &ConfigError) -> String {
        error.to_string()
    }

    #[test]
    fn bad_values_name_the_line_and_the_key() {
        // Line 7: the first line of MINIMAL is empty.
        let error = parse(&format!("{MINIMAL}runtime = \"docker\"\n")).expect_err("docker");
        let text = message(&error);
        assert!(text.starts_with("agent.toml line 7: "), "{text}");
        assert!(
            text.contains("docker") && text.contains("process"),
            "{text}"
        );

        let error = parse(&format!("{MINIMAL}os = \"ostree\"\n")).expect_err("ostree");
        let text = message(&error);
        assert!(text.starts_with("agent.toml line 7: "), "{text}");
        assert!(text.contains("rpm-ostree"), "{text}");

        let error = parse(&format!("{MINIMAL}stat_dir = \"/x\"\n")).expect_err("typo");
        let text = message(&error);
        assert!(text.starts_with("agent.toml line 7: "), "{text}");
        assert!(text.contains("stat_dir"), "{text}");

        let error = parse(&format!(
            "{MINIMAL}runtime = \"podman\"\n[podman]\nbinary = \"podman\"\nauth_file = \"x\"\n"
        ))
        .expect_err("typo in a table");
        let text = message(&error);
        assert!(text.starts_with("agent.toml line 10: "), "{text}");
        assert!(text.contains("auth_file"), "{text}");

        let error = parse(&format!("{MINIMAL}heartbeat_period_seconds = \"60\"\n"))
            .expect_err("string for a number");
        assert!(
            message(&error).starts_with("agent.toml line 7: "),
            "{error}"
        );

        let error = parse("server = \"https://x\"\nca = [").expect_err("not toml");
        assert!(
            message(&error).starts_with("agent.toml line 2: "),
            "{error}"
        );

        let error = parse("server = \"https://x\"\n").expect_err("missing");
        let text = message(&error);
        assert!(text.contains("missing field"), "{text}");
    }

    #[test]
    fn values_that_parse_but_cannot_be_used_name_the_key() {
        let cases = [
            (MINIMAL.replace("https://", "http://"), "server"),
            (
                format!("{MINIMAL}heartbeat_period_seconds = 0\n"),
                "heartbeat_period_seconds",
            ),
            (
                format!("{MINIMAL}runtime = \"memory\"\n[process]\n"),
                "process",
            ),
            (format!("{MINIMAL}[podman]\n"), "podman"),
            (
                format!("{MINIMAL}[process]\ninitial_backoff_seconds = 0\n"),
                "process.initial_backoff_seconds",
            ),
            (
                format!(
                    "{MINIMAL}[process]\ninitial_backoff_seconds = 10\nmax_backoff_seconds = 5\n"
                ),
                "process.max_backoff_seconds",
            ),
        ];
        for (text, key) in cases {
            match parse(&text) {
                Err(ConfigError::Invalid { key: found, .. }) => assert_eq!(found, key),
                other => panic!("{key}: {other:?}"),
            }
        }
    }
}
