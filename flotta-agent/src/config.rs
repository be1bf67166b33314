//! `agent.toml`: what the reference agent reads at start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Which workload runtime the agent uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Workloads kept in memory and reported running (tests, simulations).
    Memory,
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
    /// Heartbeat period until the server's configuration sets one.
    pub heartbeat_period_seconds: Option<u64>,
}

fn default_namespace() -> String {
    "default".into()
}

fn default_runtime() -> RuntimeKind {
    RuntimeKind::Memory
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
    /// The configuration file is not valid.
    #[error("{path} is not a valid agent configuration")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's error, with line and column.
        #[source]
        source: toml::de::Error,
    },
    /// No device id configured and the host name is unreadable.
    #[error("no device_id configured and the host name could not be read")]
    NoDeviceId,
}

impl AgentFile {
    /// Parses `text`, read from `path` (for errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
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

    #[test]
    fn a_minimal_file_gets_defaults() {
        let file = AgentFile::parse(MINIMAL, Path::new("agent.toml")).expect("valid");
        assert_eq!(file.namespace, "default");
        assert_eq!(file.runtime, RuntimeKind::Memory);
        assert!(file.labels.is_empty());
        assert_eq!(file.device_id, None);
    }

    #[test]
    fn labels_and_device_id_are_read() {
        let text = format!("{MINIMAL}device_id = \"cam-1\"\n[labels]\nsite = \"north\"\n");
        let file = AgentFile::parse(&text, Path::new("agent.toml")).expect("valid");
        assert_eq!(file.device_id().expect("id"), "cam-1");
        assert_eq!(file.labels.get("site").map(String::as_str), Some("north"));
    }

    #[test]
    fn unknown_runtimes_keys_and_missing_fields_are_refused_with_the_cause() {
        let unknown_runtime = format!("{MINIMAL}runtime = \"podman\"\n");
        let error = AgentFile::parse(&unknown_runtime, Path::new("a.toml")).expect_err("podman");
        let cause = std::error::Error::source(&error)
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(cause.contains("podman"), "{cause}");

        let typo = format!("{MINIMAL}stat_dir = \"/x\"\n");
        let error = AgentFile::parse(&typo, Path::new("a.toml")).expect_err("typo");
        let cause = std::error::Error::source(&error)
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(cause.contains("stat_dir"), "{cause}");

        let error =
            AgentFile::parse("server = \"https://x\"\n", Path::new("a.toml")).expect_err("missing");
        assert!(error.to_string().contains("a.toml"));
        let cause = std::error::Error::source(&error)
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(cause.contains("missing field"), "{cause}");
    }
}
