//! The management API suite over PostgreSQL (a fresh database per test in the
//! cluster named by `FLOTTA_TEST_POSTGRES_URL`; skipped when it is not set).

crate::api_suite::api_tests!(postgres = true);
