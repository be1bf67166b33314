//! The management API suite over PostgreSQL (a fresh database per test in the
//! cluster named by `FLOTTA_TEST_POSTGRES_URL`; ignored unless asked for).

crate::api_suite::api_tests!(postgres);

/// The PostgreSQL tests are ignored where no cluster is configured; on CI that would
/// hide them, so there it is a failure.
#[test]
fn ci_configures_the_postgresql_cluster() {
    flotta_testing::postgres::require_in_ci();
}
