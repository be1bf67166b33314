//! Management API tokens: the bootstrap admin token and `admin.yaml`, the client
//! configuration the CLI and the Python client load directly.

use std::path::Path;

use crate::store::{Store, StoreError, TokenHash, TokenRole};

/// `kind` written in `admin.yaml`.
pub const ADMIN_CONFIG_KIND: &str = flotta_core::client_config::CLIENT_CONFIG_KIND;

/// The contents of `admin.yaml`: where the management API is, which CA signs its
/// certificate, and an admin bearer token. The same type the client reads
/// ([`flotta_core::client_config::ClientConfig`]), so the two cannot drift.
pub use flotta_core::client_config::ClientConfig as AdminConfig;

/// What went wrong with tokens or `admin.yaml`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The store failed.
    #[error("token storage failed")]
    Store(#[from] StoreError),
    /// `admin.yaml` could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `admin.yaml` could not be encoded.
    #[error("cannot encode {path}")]
    Encode {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: serde_yaml_ng::Error,
    },
}

/// Reads `admin.yaml`; `None` when it is missing or unreadable (it is then written
/// anew).
pub fn load_admin_config(path: &Path) -> Option<AdminConfig> {
    let text = std::fs::read_to_string(path).ok()?;
    AdminConfig::from_yaml(&text, path).ok()
}

/// Writes `admin.yaml` atomically with mode 0600 (it holds a secret).
pub fn save_admin_config(config: &AdminConfig, path: &Path) -> Result<(), TokenError> {
    let text = config.to_yaml().map_err(|source| TokenError::Encode {
        path: path.to_owned(),
        source,
    })?;
    crate::fs::write_private_file(path, text.as_bytes()).map_err(|source| TokenError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Returns an admin token secret that the store accepts: the one in `existing`
/// when it is still valid, else a new one.
pub async fn ensure_admin_token(
    store: &dyn Store,
    existing: Option<&AdminConfig>,
) -> Result<String, TokenError> {
    if let Some(config) = existing
        && let Some(token) = store.find_token(&TokenHash::of(&config.token)).await?
        && token.role == Some(TokenRole::Admin)
        && !token.expired_at(time::OffsetDateTime::now_utc())
    {
        return Ok(config.token.clone());
    }
    let issued = store
        .create_token(TokenRole::Admin, "admin.yaml bootstrap token")
        .await?;
    Ok(issued.secret)
}

/// The tokens as a text table: id, name, role, groups, expiry (`never`, or the
/// time, marked `(expired)` once past).
pub fn token_table(tokens: &[crate::store::ApiToken]) -> String {
    let now = time::OffsetDateTime::now_utc();
    let mut rows = vec![[
        "ID".to_owned(),
        "NAME".to_owned(),
        "ROLE".to_owned(),
        "GROUPS".to_owned(),
        "EXPIRES".to_owned(),
    ]];
    for token in tokens {
        let expires = match token.expires_at {
            None => "never".to_owned(),
            Some(at) if at <= now => format!("{} (expired)", flotta_core::timestamp::rfc3339(at)),
            Some(at) => flotta_core::timestamp::rfc3339(at),
        };
        rows.push([
            token.id.clone(),
            token.name.clone(),
            token.role.map_or("-", TokenRole::as_str).to_owned(),
            if token.groups.is_empty() {
                "-".to_owned()
            } else {
                token.groups.join(",")
            },
            expires,
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    #[tokio::test]
    async fn admin_token_is_reused_while_valid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path().join("t.db")).expect("store");
        let first = ensure_admin_token(&store, None).await.expect("created");
        let config = AdminConfig {
            kind: ADMIN_CONFIG_KIND.into(),
            server: "https://localhost:8443".into(),
            edge_server: "https://localhost:8043".into(),
            certificate_authority: "pem".into(),
            token: first.clone(),
            oidc: None,
        };
        let again = ensure_admin_token(&store, Some(&config))
            .await
            .expect("reused");
        assert_eq!(again, first);
        let stale = AdminConfig {
            token: "flt_unknown".into(),
            ..config
        };
        let replaced = ensure_admin_token(&store, Some(&stale))
            .await
            .expect("replaced");
        assert_ne!(replaced, "flt_unknown");
        assert!(
            store
                .find_token(&TokenHash::of(&replaced))
                .await
                .expect("find")
                .is_some()
        );

        let path = dir.path().join("admin.yaml");
        save_admin_config(&stale, &path).expect("saved");
        assert_eq!(load_admin_config(&path), Some(stale));
    }
}
