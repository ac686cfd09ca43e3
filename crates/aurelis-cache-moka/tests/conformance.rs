//! The core conformance suite, run against a default memory tier.

use std::sync::Arc;

use aurelis_cache_core::testkit::Fixture;
use aurelis_cache_moka::MokaStore;

async fn fixture() -> Fixture {
    let store = MokaStore::builder().build().expect("default memory tier builds");
    Fixture::new(Arc::new(store))
}

aurelis_cache_core::conformance_tests!(fixture);

mod by_bytes {
    //! The same suite with a store bounded by bytes (weigher on), big enough for its values.

    use super::*;

    async fn fixture() -> Fixture {
        let store =
            MokaStore::builder().max_bytes(64 * 1024 * 1024).build().expect("memory tier builds");
        Fixture::new(Arc::new(store))
    }

    aurelis_cache_core::conformance_tests!(fixture);
}
