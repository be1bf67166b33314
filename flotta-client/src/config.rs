//! `admin.yaml`: the client configuration the server writes into its data directory.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ClientError, ClientResult};

/// `kind` of a client configuration file.
pub const CLIENT_CONFIG_KIND: &str = "FlottaClientConfig";

/// Where the management API is, which CA signs its certificate, and a bearer token,
/// as in the server's `admin.yaml`:
///
/// ```yaml
/// kind: FlottaClientConfig
/// server: https://localhost:8443
/// edgeServer: https://localhost:8043
/// certificateAuthority: |
///   -----BEGIN CERTIFICATE-----
///   ...
/// token: flt_...
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientConfig {
    /// Always [`CLIENT_CONFIG_KIND`] (optional on input).
    #[serde(default = "default_kind")]
    pub kind: String,
    /// Base URL of the management API, e.g. `https://localhost:8443`.
    pub server: String,
    /// Base URL of the Edge API, e.g. `https://localhost:8043`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_server: Option<String>,
    /// PEM of the CA that signs the server certificates.
    pub certificate_authority: String,
    /// Bearer token of the management API.
    pub token: String,
}

fn default_kind() -> String {
    CLIENT_CONFIG_KIND.to_owned()
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never printed.
        f.debug_struct("ClientConfig")
            .field("server", &self.server)
            .field("edge_server", &self.edge_server)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// Parses the YAML text of a configuration file; `path` is only used in errors.
    pub fn from_yaml(text: &str, path: &Path) -> ClientResult<Self> {
        let config: ClientConfig =
            serde_yaml_ng::from_str(text).map_err(|e| ClientError::ParseConfig {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        if config.kind != CLIENT_CONFIG_KIND {
            return Err(ClientError::ParseConfig {
                path: path.to_owned(),
                message: format!("kind is {:?}, expected {CLIENT_CONFIG_KIND:?}", config.kind),
            });
        }
        Ok(config)
    }

    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> ClientResult<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ClientError::ReadConfig {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_server_written_shape_and_hides_the_token() {
        let text = "kind: FlottaClientConfig\nserver: https://localhost:8443\nedgeServer: https://localhost:8043\ncertificateAuthority: |\n  -----BEGIN CERTIFICATE-----\n  AA==\n  -----END CERTIFICATE-----\ntoken: flt_secret\n";
        let config = ClientConfig::from_yaml(text, Path::new("admin.yaml")).expect("parses");
        assert_eq!(config.server, "https://localhost:8443");
        assert_eq!(
            config.edge_server.as_deref(),
            Some("https://localhost:8043")
        );
        assert_eq!(config.token, "flt_secret");
        assert!(
            config
                .certificate_authority
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert!(!format!("{config:?}").contains("flt_secret"));
    }

    #[test]
    fn names_the_file_and_the_problem() {
        let err = ClientConfig::from_yaml("server: x\n", Path::new("/etc/a.yaml"))
            .expect_err("missing fields");
        let text = err.to_string();
        assert!(text.contains("/etc/a.yaml"), "{text}");
        assert!(
            text.contains("certificateAuthority") || text.contains("token"),
            "{text}"
        );
        let err = ClientConfig::from_yaml(
            "kind: Other\nserver: x\ncertificateAuthority: x\ntoken: t\n",
            Path::new("a.yaml"),
        )
        .expect_err("wrong kind");
        assert!(err.to_string().contains("Other"));
    }
}
