//! Compression per tier through the facade: configured for the disk tier, transparent to
//! readers (also to a cache built without it), counted in the stats report.

#![cfg(all(feature = "compress", feature = "sled", feature = "moka"))]

use aurelis_cache::{Cache, CacheConfig, SledStore, Store, Tier};

fn answer() -> String {
    "The borrow checker ensures references never outlive the data they point to. ".repeat(60)
}

#[tokio::test]
async fn a_compressed_disk_tier_is_transparent_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[memory]\nenabled = false\n[disk]\npath = {:?}\n[disk.compression]\nalgorithm = \"zstd\"\n",
        dir.path().join("db")
    );
    let cache = CacheConfig::from_toml_str(&text).unwrap().build().await.unwrap();
    cache.set(("answers", "a1"), &answer()).await.unwrap();
    cache.set(("answers", "small"), &"short".to_string()).await.unwrap();
    assert_eq!(cache.get::<String>(("answers", "a1")).await.unwrap(), Some(answer()));
    assert_eq!(cache.get::<String>(("answers", "small")).await.unwrap().as_deref(), Some("short"));
    let report = cache.stats_report().await;
    let disk = &report.tiers[0];
    assert!(disk.bytes_before_compression > 4_000, "{disk:?}");
    assert!(
        disk.bytes_after_compression * 4 < disk.bytes_before_compression,
        "a repetitive 4.6 KB answer should shrink well: {disk:?}"
    );
    // The monitor shows it per tier.
    let monitor = aurelis_cache::CacheMonitor::new(cache.clone());
    let report = monitor.performance_report().await;
    let compression = report.backend_metrics[0].compression.clone().expect("disk compression");
    assert!(compression.ratio > 4.0, "{compression:?}");
    drop(monitor);
    cache.close(std::time::Duration::from_secs(5)).await.unwrap();
    drop(cache);

    // A cache without compression configured reads what the compressed tier wrote.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let store = loop {
        match SledStore::builder().path(dir.path().join("db")).build() {
            Ok(s) => break s,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Err(e) => panic!("the disk tier was never released: {e}"),
        }
    };
    let key = aurelis_cache::KeyBuilder::default().build_key("answers", "a1", None).unwrap();
    let raw = store.get(key.as_str()).await.unwrap().expect("stored");
    assert!(raw.len() < answer().len() / 4, "stored compressed: {} bytes", raw.len());
    let plain =
        Cache::builder().tier(Tier::new("disk", std::sync::Arc::new(store))).build().unwrap();
    assert_eq!(plain.get::<String>(("answers", "a1")).await.unwrap(), Some(answer()));
}

#[test]
fn a_bad_compression_section_is_a_config_error() {
    let err =
        CacheConfig::from_toml_str("[disk.compression]\nalgorithm = \"brotli\"\n").unwrap_err();
    assert!(err.to_string().contains("brotli") || err.to_string().contains("algorithm"), "{err}");
}
