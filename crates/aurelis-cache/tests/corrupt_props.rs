//! Property tests: whatever bytes a tier hands back, the cache answers with a value or a
//! counted miss, never an error or a panic.

mod common;

use common::tiers;
use proptest::prelude::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_bytes_in_a_tier_are_a_miss(raw in proptest::collection::vec(any::<u8>(), 0..600)) {
        let rt = runtime();
        rt.block_on(async {
            let t = tiers();
            let cache = t.cache();
            let key = cache.keys().build_key("doc", "fuzz", None).unwrap();
            t.disk.set(key.as_str(), raw.into(), None).await.unwrap();
            let got = cache.get::<String>(("doc", "fuzz")).await;
            prop_assert!(got.is_ok());
            prop_assert!(got.unwrap().is_none());
            prop_assert_eq!(cache.stats_report().await.overall.corrupt, 1);
            Ok(())
        })?;
    }

    #[test]
    fn damaged_valid_entries_never_serve_wrong_values(
        value in "\\PC{0,200}",
        flip in any::<proptest::sample::Index>(),
        bit in 0u8..8,
        cut in any::<proptest::sample::Index>(),
    ) {
        let rt = runtime();
        rt.block_on(async {
            let t = tiers();
            let cache = t.cache();
            cache.set(("doc", "v"), &value).await.unwrap();
            let key = cache.keys().build_key("doc", "v", None).unwrap();
            let good = t.disk.get(key.as_str()).await.unwrap().unwrap();
            t.memory.clear().await.unwrap();

            let mut flipped = good.to_vec();
            let i = flip.index(flipped.len());
            flipped[i] ^= 1 << bit;
            t.disk.set(key.as_str(), flipped.into(), None).await.unwrap();
            prop_assert_eq!(cache.get::<String>(("doc", "v")).await.unwrap(), None);

            let truncated = good.slice(..cut.index(good.len()));
            t.disk.set(key.as_str(), truncated, None).await.unwrap();
            prop_assert_eq!(cache.get::<String>(("doc", "v")).await.unwrap(), None);

            t.disk.set(key.as_str(), good, None).await.unwrap();
            prop_assert_eq!(cache.get::<String>(("doc", "v")).await.unwrap(), Some(value.clone()));
            Ok(())
        })?;
    }
}
