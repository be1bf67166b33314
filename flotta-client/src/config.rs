//! `admin.yaml`: the client configuration the server writes into its data directory.
//! The type is core's ([`flotta_core::client_config`], shared with the server that
//! writes it); reading the file is here.

use std::path::Path;

pub use flotta_core::client_config::{CLIENT_CONFIG_KIND, ClientConfig, ClientConfigError};

use crate::error::{ClientError, ClientResult};

/// Reads and parses a configuration file such as the server's `admin.yaml`.
pub fn load_config(path: &Path) -> ClientResult<ClientConfig> {
    let text = std::fs::read_to_string(path).map_err(|source| ClientError::ReadConfig {
        path: path.to_owned(),
        source,
    })?;
    Ok(ClientConfig::from_yaml(&text, path)?)
}

impl From<ClientConfigError> for ClientError {
    fn from(error: ClientConfigError) -> Self {
        ClientError::ParseConfig {
            path: error.path,
            message: error.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_file_it_cannot_read_or_parse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.yaml");
        match load_config(&missing) {
            Err(ClientError::ReadConfig { path, .. }) => assert_eq!(path, missing),
            other => panic!("expected ReadConfig, got {other:?}"),
        }
        let bad = dir.path().join("bad.yaml");
        std::fs::write(
            &bad,
            "kind: Other\nserver: x\ncertificateAuthority: x\ntoken: t\n",
        )
        .expect("write");
        match load_config(&bad) {
            Err(ClientError::ParseConfig { path, message }) => {
                assert_eq!(path, bad);
                assert!(message.contains("Other"), "{message}");
            }
            other => panic!("expected ParseConfig, got {other:?}"),
        }
    }
}
