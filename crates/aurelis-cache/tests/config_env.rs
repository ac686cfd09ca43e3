//! `CacheConfig::load` on the real process environment.
//!
//! This binary holds a single test, so changing the environment races no other test (the
//! other config tests pass their variables explicitly and never read it).

use aurelis_cache::{CacheConfig, ErrorKind};

#[test]
fn load_applies_the_process_environment_on_top_of_the_file() {
    // Whatever the caller's shell exports is not part of this test.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().to_ascii_uppercase().starts_with("AURELIS_CACHE__") {
            std::env::remove_var(name);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cache.toml");
    std::fs::write(
        &file,
        "namespace = \"fromfile\"\n[memory]\nttl_secs = 42\n[disk]\nttl_secs = 7\n",
    )
    .unwrap();

    let c = CacheConfig::load(Some(&file)).unwrap();
    assert_eq!((c.namespace.as_str(), c.memory.ttl_secs, c.disk.ttl_secs), ("fromfile", 42, 7));

    std::env::set_var("AURELIS_CACHE__NAMESPACE", "2024");
    std::env::set_var("AURELIS_CACHE__MEMORY__TTL_SECS", "60");
    let c = CacheConfig::load(Some(&file)).unwrap();
    assert_eq!(c.namespace, "2024");
    assert_eq!(c.memory.ttl_secs, 60);
    assert_eq!(c.disk.ttl_secs, 7);
    let c = CacheConfig::load(None).unwrap();
    assert_eq!((c.namespace.as_str(), c.memory.ttl_secs, c.disk.ttl_secs), ("2024", 60, 86_400));

    std::env::set_var("AURELIS_CACHE__MEMORY__TTL_SEC", "60");
    let err = CacheConfig::load(Some(&file)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("AURELIS_CACHE__MEMORY__TTL_SEC"), "{err}");
    std::env::remove_var("AURELIS_CACHE__MEMORY__TTL_SEC");
    std::env::remove_var("AURELIS_CACHE__NAMESPACE");
    std::env::remove_var("AURELIS_CACHE__MEMORY__TTL_SECS");
}
