//! Opening stores for the conformance suite: a fresh SQLite file in a temporary
//! directory, or a fresh database in the PostgreSQL cluster named by
//! `FLOTTA_TEST_POSTGRES_URL`.

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

    /// A fresh PostgreSQL database, or `None` (after saying so) when no test
    /// cluster is configured.
    #[cfg(feature = "postgres")]
    pub async fn postgres() -> Option<Backend> {
        let Some(base) = postgres_url() else {
            println!("skipped: FLOTTA_TEST_POSTGRES_URL not set");
            return None;
        };
        let db = format!("flotta_test_{}", uuid::Uuid::new_v4().simple());
        let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .expect("connect to FLOTTA_TEST_POSTGRES_URL");
        let driver = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .expect("create test database");
        drop(client);
        let _ = driver.await;
        Some(Backend::Postgres {
            url: with_database(&base, &db),
        })
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

#[cfg(feature = "postgres")]
pub fn postgres_url() -> Option<String> {
    std::env::var("FLOTTA_TEST_POSTGRES_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Replaces the database name of a `postgres://user@host:port/db` URL.
#[cfg(feature = "postgres")]
fn with_database(url: &str, db: &str) -> String {
    let (main, query) = match url.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (url, None),
    };
    let authority_start = main.find("://").map_or(0, |i| i + 3);
    let base = match main[authority_start..].find('/') {
        Some(slash) => &main[..authority_start + slash],
        None => main,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}
