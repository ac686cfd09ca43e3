//! The core conformance suite, run with a compression layer in front of a memory tier and a
//! disk tier (the suite's values are not envelopes, so they pass through untouched; the
//! forwarding of every `Store` method is what is checked).

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
