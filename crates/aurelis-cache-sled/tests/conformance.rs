//! The core conformance suite, run against a disk tier in a temporary directory.

use std::sync::Arc;

use aurelis_cache_core::testkit::Fixture;
use aurelis_cache_sled::SledStore;

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::builder().path(dir.path().join("db")).build().expect("disk tier opens");
    Fixture::new(Arc::new(store)).with_guard(dir)
}

aurelis_cache_core::conformance_tests!(fixture);

mod capped {
    //! The same suite with a size cap (write-order bookkeeping on), big enough for its values.

    use super::*;

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledStore::builder()
            .path(dir.path().join("db"))
            .max_bytes(64 * 1024 * 1024)
            .sweep_interval(std::time::Duration::from_millis(50))
            .build()
            .expect("disk tier opens");
        Fixture::new(Arc::new(store)).with_guard(dir)
    }

    aurelis_cache_core::conformance_tests!(fixture);
}
