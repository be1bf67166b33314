//! The management API suite over embedded SQLite.

crate::api_suite::api_tests!(sqlite);
