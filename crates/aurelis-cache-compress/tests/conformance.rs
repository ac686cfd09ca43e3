//! The core conformance suite, run with a compression layer in front of a memory tier, a disk
//! tier and a Redis tier (a real `redis-server`, shared, with a key prefix per test). The
//! suite's values are not envelopes, so they pass through untouched; the forwarding of every
//! `Store` method is what is checked.

use std::sync::Arc;

use aurelis_cache_compress::{Algorithm, CompressionLayer};
use aurelis_cache_core::testkit::Fixture;

fn layer(algorithm: Algorithm) -> CompressionLayer {
    CompressionLayer::builder().algorithm(algorithm).build().expect("layer builds")
}

mod moka_zstd {
    use super::*;

    async fn fixture() -> Fixture {
        let store = aurelis_cache_moka::MokaStore::builder().build().expect("memory tier");
        Fixture::new(Arc::new(layer(Algorithm::Zstd).layer(Arc::new(store))))
    }

    aurelis_cache_core::conformance_tests!(fixture);
}

mod moka_lz4 {
    use super::*;

    async fn fixture() -> Fixture {
        let store = aurelis_cache_moka::MokaStore::builder()
            .max_bytes(64 * 1024 * 1024)
            .build()
            .expect("memory tier");
        Fixture::new(Arc::new(layer(Algorithm::Lz4).layer(Arc::new(store))))
    }

    aurelis_cache_core::conformance_tests!(fixture);
}

mod sled_zstd {
    use super::*;

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = aurelis_cache_sled::SledStore::builder()
            .path(dir.path().join("db"))
            .build()
            .expect("disk tier opens");
        Fixture::new(Arc::new(layer(Algorithm::Zstd).layer(Arc::new(store)))).with_guard(dir)
    }

    aurelis_cache_core::conformance_tests!(fixture);
}

mod redis_zstd {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn fixture() -> Fixture {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let server = tokio::task::spawn_blocking(aurelis_redis_harness::RedisServer::shared)
            .await
            .expect("join")
            .unwrap_or_else(|e| panic!("{e}"));
        let prefix = format!(
            "compress-conf:{}:{}:",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let store = aurelis_cache_redis::RedisStore::builder()
            .url(server.url())
            .key_prefix(prefix)
            .timeout_ms(5_000)
            .pool_size(4)
            .build()
            .await
            .expect("redis tier");
        Fixture::new(Arc::new(layer(Algorithm::Zstd).layer(Arc::new(store)))).with_guard(server)
    }

    aurelis_cache_core::conformance_tests!(fixture);
}
