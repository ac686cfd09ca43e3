//! `CacheConfig`: reference defaults, TOML, environment overrides, and building a cache.

use aurelis_cache::{CacheConfig, Codec};

#[test]
fn defaults_mirror_the_reference() {
    let c = CacheConfig::default();
    assert_eq!(c.namespace, "aurelis");
    assert_eq!(c.version, "v1");
    assert_eq!(c.codec, Codec::MessagePack);
    assert!(c.memory.enabled);
    assert_eq!(c.memory.ttl_secs, 300);
    // No capacity given: the moka store holds 1000 entries.
    assert_eq!((c.memory.store.max_entries, c.memory.store.max_bytes), (None, None));
    assert!(c.disk.enabled);
    assert_eq!(c.disk.ttl_secs, 86_400);
}

#[test]
fn toml_round_trip_and_overrides() {
    let text = r#"
        namespace = "myapp"
        codec = "json"
        [memory]
        ttl_secs = 60
        max_entries = 50
        [disk]
        ttl_secs = 3600
        path = "/tmp/somewhere"
    "#;
    let c = CacheConfig::from_toml_str(text).unwrap();
    assert_eq!(c.namespace, "myapp");
    assert_eq!(c.codec, Codec::Json);
    assert_eq!(c.memory.ttl_secs, 60);
    assert_eq!(c.memory.store.max_entries, Some(50));
    assert_eq!(c.disk.store.path.as_deref(), Some(std::path::Path::new("/tmp/somewhere")));
    let back = CacheConfig::from_toml_str(&toml::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);

    let c = c
        .with_overrides([
            ("AURELIS_CACHE__DISK__PATH", "/var/cache/x"),
            ("AURELIS_CACHE__MEMORY__ENABLED", "false"),
            ("AURELIS_CACHE__STRICT", "true"),
            ("PATH", "/usr/bin"),
        ])
        .unwrap();
    assert_eq!(c.disk.store.path.as_deref(), Some(std::path::Path::new("/var/cache/x")));
    assert!(!c.memory.enabled);
    assert!(c.strict);
}

#[tokio::test]
async fn a_config_builds_memory_over_disk() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("[disk]\npath = {:?}\n", dir.path().join("db"));
    let cache = CacheConfig::from_toml_str(&text).unwrap().build().await.unwrap();
    assert_eq!(cache.layer_names(), ["memory", "disk"]);
    cache.set("k", "v", None, &5u8).await.unwrap();
    assert_eq!(cache.get::<u8>("k", "v", None).await.unwrap(), Some(5));
    drop(cache);
    // The disk tier persists across instances.
    let cache = CacheConfig::from_toml_str(&text).unwrap().build().await.unwrap();
    assert_eq!(cache.get::<u8>("k", "v", None).await.unwrap(), Some(5));
    let report = cache.stats_report().await;
    assert_eq!(report.tiers[1].hits, 1);
}

#[tokio::test]
async fn load_reads_file_then_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cache.toml");
    std::fs::write(&file, "namespace = \"fromfile\"\n[memory]\nttl_secs = 42\n").unwrap();
    let c = CacheConfig::load(Some(&file)).unwrap();
    assert_eq!(c.namespace, "fromfile");
    assert_eq!(c.memory.ttl_secs, 42);
}
