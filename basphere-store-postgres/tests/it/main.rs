//! basphere-store-postgres's integration tests, on a private PostgreSQL server: the store
//! conformance suite, constraint violations named by the database, concurrent writers and
//! claimers, a restarted server, and migrations.

use std::sync::Arc;

use basphere_core::testing;
use basphere_core::Store;
use basphere_store_postgres::testing::PgCluster;

#[test]
fn postgres_passes_the_store_conformance_suite() {
    let cluster = PgCluster::shared();
    testing::store::check_all(&|| Arc::new(cluster.fresh_store()) as Arc<dyn Store>);
}
