//! Bad input is a clear error naming what was wrong.

mod common;

use aurelis_cache::{CacheConfig, ErrorKind, SetOptions, Tier};
use common::tiers;

#[tokio::test]
async fn bad_keys_are_named() {
    let t = tiers();
    let cache = t.cache();
    let err = cache.get::<u8>(("", "id")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidKey);
    assert!(err.to_string().contains("category is empty"), "{err}");
    let err = cache.set(("cat", ""), &1u8).await.unwrap_err();
    assert!(err.to_string().contains("identifier is empty"), "{err}");
    let err = cache.set(("bad category", "id"), &1u8).await.unwrap_err();
    assert!(err.to_string().contains("category"), "{err}");
    let long = "x".repeat(5000);
    let err = cache.get::<u8>(("cat", &long)).await.unwrap_err();
    assert!(err.to_string().contains("longer than"), "{err}");
}

#[tokio::test]
async fn oversized_values_are_refused_with_their_size() {
    let t = tiers();
    let cache = t.builder().max_value_bytes(1024).build().unwrap();
    let err = cache.set(("doc", "big"), &vec![0u8; 4096]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueTooLarge);
    assert!(err.to_string().contains("max_value_bytes"), "{err}");
    assert!(cache.get::<Vec<u8>>(("doc", "big")).await.unwrap().is_none());
}

#[tokio::test]
async fn bad_tags_are_refused() {
    let t = tiers();
    let cache = t.cache();
    let err = cache.set_with(("doc", "d"), &1u8, &SetOptions::new().tag("")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Codec);
    assert!(cache.invalidate_tag("").await.is_err());
}

#[tokio::test]
async fn a_stale_window_without_a_ttl_is_refused_not_dropped() {
    let t = tiers();
    let cache = t.cache();
    let stale_only = SetOptions::new().stale_for(std::time::Duration::from_secs(60));
    let err = cache.set_with(("doc", "s"), &1u8, &stale_only).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
    assert!(err.to_string().contains("stale_for needs a ttl"), "{err}");
    assert_eq!(cache.get::<u8>(("doc", "s")).await.unwrap(), None, "nothing was written");
    let err = cache
        .get_or_compute_with(("doc", "s"), &stale_only, || async { Ok::<_, std::io::Error>(1u8) })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("stale_for needs a ttl"), "{err}");
    // With a TTL it is accepted.
    let both = stale_only.ttl(std::time::Duration::from_secs(1));
    cache.set_with(("doc", "s"), &2u8, &both).await.unwrap();
    assert_eq!(cache.get::<u8>(("doc", "s")).await.unwrap(), Some(2));
}

#[test]
fn bad_builders_are_refused() {
    let t = tiers();
    let err = aurelis_cache::Cache::builder().build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("at least one tier"), "{err}");
    let err = aurelis_cache::Cache::builder()
        .tier(Tier::new("x", t.memory.clone()))
        .tier(Tier::new("x", t.disk.clone()))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("two tiers are named `x`"), "{err}");
    let err = t.builder().namespace("has space").build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("namespace"), "{err}");
}

#[test]
fn bad_config_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let err = CacheConfig::from_toml_file(&missing).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("nope.toml"), "{err}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[memory]\nttl_secs = \"five minutes\"\n").unwrap();
    let err = CacheConfig::from_toml_file(&bad).unwrap_err();
    assert!(err.to_string().contains("bad.toml"), "{err}");
    assert!(err.to_string().contains("ttl_secs"), "{err}");

    std::fs::write(&bad, "this is not toml at all [").unwrap();
    assert_eq!(CacheConfig::from_toml_file(&bad).unwrap_err().kind(), ErrorKind::Config);

    let err = CacheConfig::from_toml_str("unknown_section = 1").unwrap_err();
    assert!(err.to_string().contains("unknown_section"), "{err}");

    let err = CacheConfig::default()
        .with_overrides([("AURELIS_CACHE__MEMORY__TTL_SECS", "soon")])
        .unwrap_err();
    assert!(err.to_string().contains("AURELIS_CACHE__MEMORY__TTL_SECS"), "{err}");
}

#[tokio::test]
async fn bad_config_values_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let text = format!("[memory]\nttl_secs = 0\n[disk]\npath = {path:?}\n");
    let err = CacheConfig::from_toml_str(&text).unwrap().build().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("memory.ttl_secs"), "{err}");

    let text = "[memory]\nenabled = false\n[disk]\nenabled = false\n";
    let err = CacheConfig::from_toml_str(text).unwrap().build().await.unwrap_err();
    assert!(err.to_string().contains("every tier is disabled"), "{err}");

    let text = "[memory]\nmax_entries = 10\nmax_bytes = 1000\n[disk]\nenabled = false\n";
    let err = CacheConfig::from_toml_str(text).unwrap().build().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}
