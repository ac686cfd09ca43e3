//! The core conformance suite against real Redis: a fresh standalone server per test (no key
//! prefix, so `clear`/`len`/`size_bytes` use FLUSHDB/DBSIZE/INFO), one shared standalone
//! server with a key prefix per test (the SCAN paths), and one shared three-master cluster
//! with a key prefix per test. The prefixes carry no hash tag, so every test's keys spread
//! over slots on all three masters.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aurelis_cache_core::testkit::Fixture;
use aurelis_cache_redis::RedisStore;
use aurelis_redis_harness::{RedisCluster, RedisServer};

/// Generous, so a loaded test machine does not turn slowness into failures; the time limits
/// themselves are tested in `outage.rs`.
const TIMEOUT_MS: u64 = 5_000;

fn unique_prefix(kind: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("conf:{kind}:{}:{}:", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

mod standalone {
    use super::*;

    async fn fixture() -> Fixture {
        let server = tokio::task::spawn_blocking(RedisServer::start)
            .await
            .expect("join")
            .unwrap_or_else(|e| panic!("{e}"));
        let store = RedisStore::builder()
            .url(server.url())
            .timeout_ms(TIMEOUT_MS)
            .pool_size(4)
            .build()
            .await
            .expect("store");
        Fixture::new(Arc::new(store)).with_guard(server)
    }

    aurelis_cache_core::conformance_tests!(fixture);
}

mod standalone_prefixed {
    use super::*;

    async fn fixture() -> Fixture {
        let server = tokio::task::spawn_blocking(RedisServer::shared)
            .await
            .expect("join")
            .unwrap_or_else(|e| panic!("{e}"));
        let store = RedisStore::builder()
            .url(server.url())
            .key_prefix(unique_prefix("standalone"))
            .timeout_ms(TIMEOUT_MS)
            .pool_size(4)
            .scan_count(7) // many SCAN round trips even for a few keys
            .build()
            .await
            .expect("store");
        Fixture::new(Arc::new(store)).with_guard(server)
    }

    aurelis_cache_core::conformance_tests!(fixture);
}

mod cluster {
    use super::*;

    async fn fixture() -> Fixture {
        let cluster = tokio::task::spawn_blocking(RedisCluster::shared)
            .await
            .expect("join")
            .unwrap_or_else(|e| panic!("{e}"));
        let store = RedisStore::builder()
            .cluster_urls(cluster.urls())
            .key_prefix(unique_prefix("cluster"))
            .timeout_ms(TIMEOUT_MS)
            .pool_size(2)
            .scan_count(7)
            .build()
            .await
            .expect("cluster store");
        Fixture::new(Arc::new(store)).with_guard(cluster)
    }

    aurelis_cache_core::conformance_tests!(fixture);
}
