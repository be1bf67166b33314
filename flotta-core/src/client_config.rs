//! `admin.yaml`: the client configuration file the server writes into its data
//! directory and the command line, the client and both bindings read. One type for
//! both sides; reading and writing the file is the caller's IO. A leaf module.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
    /// Base URL of the Edge API devices enrol at, e.g. `https://localhost:8043`;
    /// empty when the file does not say.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub edge_server: String,
    /// PEM of the CA that signs the server certificates.
    pub certificate_authority: String,
    /// Bearer token of the management API.
    pub token: String,
    /// Where `token` came from when `flotta login` signed in with OIDC: the issuer
    /// and client to renew it with, and the refresh token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcLogin>,
}

/// How a client configuration's token was obtained from an OIDC issuer, so that it
/// can be renewed before it expires.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OidcLogin {
    /// The issuer URL.
    pub issuer: String,
    /// The public client signed in with.
    pub client_id: String,
    /// The refresh token, when the issuer gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// PEM of the CA of the issuer's TLS certificate; the system's trust store when
    /// empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer_certificate_authority: String,
}

impl std::fmt::Debug for OidcLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The refresh token is a secret: never printed.
        f.debug_struct("OidcLogin")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
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

/// A client configuration text that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse {path}: {message}")]
pub struct ClientConfigError {
    /// The file the text came from.
    pub path: PathBuf,
    /// What is wrong (the YAML parser's message names the line).
    pub message: String,
}

impl ClientConfig {
    /// Parses the YAML text of a configuration file; `path` is only used in errors.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, ClientConfigError> {
        let config: ClientConfig =
            serde_yaml_ng::from_str(text).map_err(|e| ClientConfigError {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        if config.kind != CLIENT_CONFIG_KIND {
            return Err(ClientConfigError {
                path: path.to_owned(),
                message: format!("kind is {:?}, expected {CLIENT_CONFIG_KIND:?}", config.kind),
            });
        }
        Ok(config)
    }

    /// The YAML text of the file.
    pub fn to_yaml(&self) -> Result<String, serde_yaml_ng::Error> {
        serde_yaml_ng::to_string(self)
    }

    /// A kubeconfig (`apiVersion: v1`, `kind: Config`) for kubectl with the same
    /// server, CA (`certificate-authority-data`) and token, its one context named
    /// [`KUBECONFIG_NAME`] and working in `namespace`.
    ///
    /// ```
    /// # use flotta_core::client_config::ClientConfig;
    /// # let config = ClientConfig::from_yaml(
    /// #     "server: https://localhost:8443\ncertificateAuthority: PEM\ntoken: t\n",
    /// #     std::path::Path::new("admin.yaml"),
    /// # ).unwrap();
    /// let kubeconfig = config.kubeconfig("fleet");
    /// assert_eq!(kubeconfig["current-context"], "flotta");
    /// assert_eq!(kubeconfig["clusters"][0]["cluster"]["server"], "https://localhost:8443");
    /// assert_eq!(kubeconfig["contexts"][0]["context"]["namespace"], "fleet");
    /// ```
    pub fn kubeconfig(&self, namespace: &str) -> serde_json::Value {
        use base64::Engine as _;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.certificate_authority);
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{
                "name": KUBECONFIG_NAME,
                "cluster": {"server": self.server, "certificate-authority-data": ca},
            }],
            "users": [{"name": KUBECONFIG_NAME, "user": {"token": self.token}}],
            "contexts": [{
                "name": KUBECONFIG_NAME,
                "context": {"cluster": KUBECONFIG_NAME, "user": KUBECONFIG_NAME, "namespace": namespace},
            }],
            "current-context": KUBECONFIG_NAME,
            "preferences": {},
        })
    }
}

/// Name of the cluster, user and context of a kubeconfig written by
/// [`ClientConfig::kubeconfig`].
pub const KUBECONFIG_NAME: &str = "flotta";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_server_written_shape_and_hides_the_token() {
        let text = "kind: FlottaClientConfig\nserver: https://localhost:8443\nedgeServer: https://localhost:8043\ncertificateAuthority: |\n  -----BEGIN CERTIFICATE-----\n  AA==\n  -----END CERTIFICATE-----\ntoken: flt_secret\n";
        let config = ClientConfig::from_yaml(text, Path::new("admin.yaml")).expect("parses");
        assert_eq!(config.server, "https://localhost:8443");
        assert_eq!(config.edge_server, "https://localhost:8043");
        assert_eq!(config.token, "flt_secret");
        assert!(
            config
                .certificate_authority
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert!(!format!("{config:?}").contains("flt_secret"));
        let written = config.to_yaml().expect("writes");
        assert_eq!(
            ClientConfig::from_yaml(&written, Path::new("again.yaml")),
            Ok(config)
        );
    }

    #[test]
    fn the_kubeconfig_carries_the_ca_as_base64_and_the_token() {
        use base64::Engine as _;
        let config = ClientConfig::from_yaml(
            "server: https://h:1\ncertificateAuthority: \"-----BEGIN CERTIFICATE-----\"\ntoken: flt_t\n",
            Path::new("a.yaml"),
        )
        .expect("parses");
        let kubeconfig = config.kubeconfig("default");
        let data = kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"]
            .as_str()
            .expect("data");
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64");
        assert_eq!(pem, b"-----BEGIN CERTIFICATE-----");
        assert_eq!(kubeconfig["users"][0]["user"]["token"], "flt_t");
        assert_eq!(
            kubeconfig["contexts"][0]["context"]["cluster"],
            KUBECONFIG_NAME
        );
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
        assert!(err.message.contains("Other"), "{err}");
    }

    #[test]
    fn the_edge_server_is_optional_on_input() {
        let config = ClientConfig::from_yaml(
            "server: x\ncertificateAuthority: x\ntoken: t\n",
            Path::new("a.yaml"),
        )
        .expect("parses");
        assert_eq!(config.kind, CLIENT_CONFIG_KIND);
        assert_eq!(config.edge_server, "");
    }
}
