//! Opening stores for the conformance suite: a fresh SQLite file in a temporary
//! directory, or a fresh database in the PostgreSQL cluster named by
//! `FLOTTA_TEST_POSTGRES_URL` (`flotta_testing::postgres`).

use std::sync::Arc;

use flotta_server::store::{SqliteStore, Store};

/// Where a test's data lives; reopening gives a new store over the same data.
pub enum Backend {
    /// A SQLite file in a temporary directory (removed when dropped).
    Sqlite { dir: tempfile::TempDir },
    /// A database of its own in the test cluster.
    #[cfg(feature = "postgres")]
    Postgres { url: String },
}

impl Backend {
    /// A fresh SQLite database.
    pub fn sqlite() -> Backend {
        Backend::Sqlite {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// A fresh database in the PostgreSQL test cluster; panics (saying how to start
    /// one) when none is configured. Callers are `#[ignore]`d tests, see
    /// `flotta_testing::postgres`.
    #[cfg(feature = "postgres")]
    pub async fn postgres() -> Backend {
        Backend::Postgres {
            url: flotta_testing::postgres::fresh_database().await,
        }
    }

    /// Opens a store over this backend's data.
    pub async fn open(&self) -> Arc<dyn Store> {
        match self {
            Backend::Sqlite { dir } => {
                Arc::new(SqliteStore::open(dir.path().join("flotta.db")).expect("open sqlite"))
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres { url } => Arc::new(
                flotta_server::store::PostgresStore::connect(url)
                    .await
                    .expect("connect postgres"),
            ),
        }
    }

    /// The connection string or file a child process needs to open the same data.
    pub fn locator(&self) -> String {
        match self {
            Backend::Sqlite { dir } => {
                format!("sqlite:{}", dir.path().join("flotta.db").display())
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres { url } => format!("postgres:{url}"),
        }
    }
}

/// Opens the store a [`Backend::locator`] string names.
pub async fn open_locator(locator: &str) -> Arc<dyn Store> {
    if let Some(path) = locator.strip_prefix("sqlite:") {
        return Arc::new(SqliteStore::open(path).expect("open sqlite"));
    }
    #[cfg(feature = "postgres")]
    if let Some(url) = locator.strip_prefix("postgres:") {
        return Arc::new(
            flotta_server::store::PostgresStore::connect(url)
                .await
                .expect("connect postgres"),
        );
    }
    panic!("unknown store locator {locator}");
}
