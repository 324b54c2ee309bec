//! Cross-crate scenarios for Basphere. The scenarios themselves are in `tests/it`; this library
//! holds the helpers they share, and `src/bin/crash-child.rs` is a process the crash tests kill.

pub mod proxy;
pub mod server;
pub mod vcsim;

use std::sync::Arc;

use basphere_core::config::PoolConfig;
use basphere_core::{Ipam, MemoryStore, Store};
use basphere_ipam::BlockIpam;
use basphere_store::SqliteStore;
use basphere_store_postgres::testing::PgCluster;

/// The store backends every scenario runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Memory,
    SqliteMemory,
    SqliteFile,
    /// A fresh schema on the private PostgreSQL server the tests start.
    Postgres,
}

pub const BACKENDS: [Backend; 4] = [Backend::Memory, Backend::SqliteMemory, Backend::SqliteFile, Backend::Postgres];

impl Backend {
    /// A fresh, empty store of this kind; file stores live in `dir`.
    pub fn open(self, dir: &std::path::Path) -> Arc<dyn Store> {
        match self {
            Backend::Memory => Arc::new(MemoryStore::new()),
            Backend::SqliteMemory => Arc::new(SqliteStore::open_in_memory().expect("sqlite in memory")),
            Backend::SqliteFile => {
                let path = dir.join(format!("store-{}.db", uuid_like()));
                Arc::new(SqliteStore::open(path).expect("sqlite file"))
            }
            Backend::Postgres => Arc::new(PgCluster::shared().fresh_store()),
        }
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst))
}

/// The IPAM factory the conformance suite takes.
pub fn block_ipam(pools: Vec<PoolConfig>) -> Arc<dyn Ipam> {
    Arc::new(BlockIpam::new(pools).expect("valid pools"))
}
