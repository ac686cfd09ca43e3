//! `CacheConfig`: reference defaults, TOML, environment overrides, and building a cache.
//!
//! No test here reads the process environment: overrides are passed explicitly
//! (`with_overrides`, `load_with_env`), so ambient `AURELIS_CACHE__*` variables of whoever runs
//! the tests change nothing. `tests/config_env.rs` checks `load` on the real environment, alone
//! in its own test binary.

use std::path::Path;
use std::time::Duration;

use aurelis_cache::{CacheConfig, Codec, ErrorKind};

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
    // Expired memory entries nobody reads are swept every minute.
    assert_eq!(c.memory.store.sweep_interval_secs, 60);
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
        sweep_interval_secs = 5
        [disk]
        ttl_secs = 3600
        path = "/tmp/somewhere"
    "#;
    let c = CacheConfig::from_toml_str(text).unwrap();
    assert_eq!(c.namespace, "myapp");
    assert_eq!(c.codec, Codec::Json);
    assert_eq!(c.memory.ttl_secs, 60);
    assert_eq!(c.memory.store.max_entries, Some(50));
    assert_eq!(c.memory.store.sweep_interval_secs, 5);
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
    assert_eq!(cache.tier_names(), ["memory", "disk"]);
    cache.set(("k", "v"), &5u8).await.unwrap();
    assert_eq!(cache.get::<u8>(("k", "v")).await.unwrap(), Some(5));
    drop(cache);
    // The disk tier persists across instances.
    let cache = CacheConfig::from_toml_str(&text).unwrap().build().await.unwrap();
    assert_eq!(cache.get::<u8>(("k", "v")).await.unwrap(), Some(5));
    let report = cache.stats_report().await;
    assert_eq!(report.tiers[1].hits, 1);
}

// ----- environment overrides, typed by the field they target -------------------------------

fn overrides(vars: &[(&str, &str)]) -> aurelis_cache::Result<CacheConfig> {
    CacheConfig::default().with_overrides(vars.iter().copied())
}

fn override_error(vars: &[(&str, &str)]) -> String {
    let err = overrides(vars).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    err.to_string()
}

#[test]
fn numeric_looking_values_of_string_fields_stay_strings() {
    let c = overrides(&[
        ("AURELIS_CACHE__NAMESPACE", "2024"),
        ("AURELIS_CACHE__VERSION", "3"),
        // `path` is an absent `Option<PathBuf>`: tried as a scalar, then as text.
        ("AURELIS_CACHE__DISK__PATH", "12345"),
        ("AURELIS_CACHE__MEMORY__NAME", "true"),
    ])
    .unwrap();
    assert_eq!(c.namespace, "2024");
    assert_eq!(c.version, "3");
    assert_eq!(c.disk.store.path.as_deref(), Some(Path::new("12345")));
    assert_eq!(c.memory.store.name, "true");
}

#[test]
fn numbers_and_booleans_are_parsed_by_field_type() {
    let c = overrides(&[
        ("AURELIS_CACHE__MEMORY__TTL_SECS", "60"),
        ("AURELIS_CACHE__MEMORY__MAX_ENTRIES", "50"),
        ("AURELIS_CACHE__MEMORY__TIMEOUT_MS", "25"),
        ("AURELIS_CACHE__DISK__PRIORITY", "-2"),
        ("AURELIS_CACHE__STRICT", "TRUE"),
        ("AURELIS_CACHE__DISK__ENABLED", "False"),
        ("AURELIS_CACHE__BREAKER__FAILURE_THRESHOLD", " 7 "),
        ("AURELIS_CACHE__CODEC", "json"),
    ])
    .unwrap();
    assert_eq!(c.memory.ttl_secs, 60);
    assert_eq!(c.memory.store.max_entries, Some(50));
    assert_eq!(c.memory.timeout_ms, Some(25));
    assert_eq!(c.disk.priority, -2);
    assert!(c.strict);
    assert!(!c.disk.enabled);
    assert_eq!(c.breaker.failure_threshold, 7);
    assert_eq!(c.codec, Codec::Json);
}

#[test]
fn section_and_field_names_are_case_insensitive() {
    let c = overrides(&[
        ("AURELIS_CACHE__Memory__Ttl_Secs", "7"),
        ("AURELIS_CACHE__disk__ttl_secs", "8"),
    ])
    .unwrap();
    assert_eq!((c.memory.ttl_secs, c.disk.ttl_secs), (7, 8));
}

#[test]
fn a_value_of_the_wrong_type_names_the_variable_path_and_type() {
    let msg = override_error(&[("AURELIS_CACHE__MEMORY__TTL_SECS", "soon")]);
    assert!(msg.contains("AURELIS_CACHE__MEMORY__TTL_SECS"), "{msg}");
    assert!(msg.contains("memory.ttl_secs"), "{msg}");
    assert!(msg.contains("an integer"), "{msg}");

    let msg = override_error(&[("AURELIS_CACHE__STRICT", "yes")]);
    assert!(msg.contains("AURELIS_CACHE__STRICT") && msg.contains("a boolean"), "{msg}");

    // In range for TOML, out of range for the field (u32, u64).
    let msg = override_error(&[("AURELIS_CACHE__BREAKER__FAILURE_THRESHOLD", "-1")]);
    assert!(msg.contains("AURELIS_CACHE__BREAKER__FAILURE_THRESHOLD"), "{msg}");
    assert!(msg.contains("breaker.failure_threshold"), "{msg}");
    let msg = override_error(&[("AURELIS_CACHE__MEMORY__TIMEOUT_MS", "later")]);
    assert!(msg.contains("AURELIS_CACHE__MEMORY__TIMEOUT_MS"), "{msg}");
    assert!(msg.contains("memory.timeout_ms"), "{msg}");
    let msg = override_error(&[("AURELIS_CACHE__CODEC", "yaml")]);
    assert!(msg.contains("AURELIS_CACHE__CODEC") && msg.contains("codec"), "{msg}");
}

#[test]
fn an_unknown_path_is_an_error_naming_the_variable() {
    for var in [
        "AURELIS_CACHE__MEMORY__TTL_SEC",
        "AURELIS_CACHE__DISK__PAHT",
        "AURELIS_CACHE__NAMESPAC",
        "AURELIS_CACHE__DSIK__PATH",
        "AURELIS_CACHE__NAMESPACE__INNER",
        "AURELIS_CACHE__BREAKER__THRESHOLD",
    ] {
        let msg = override_error(&[(var, "5")]);
        assert!(msg.contains(var), "{msg}");
        assert!(msg.contains("unknown"), "{msg}");
    }
    // A section is not a value.
    let msg = override_error(&[("AURELIS_CACHE__MEMORY", "5")]);
    assert!(msg.contains("AURELIS_CACHE__MEMORY") && msg.contains("section"), "{msg}");
    // Empty parts.
    let msg = override_error(&[("AURELIS_CACHE__MEMORY____TTL_SECS", "5")]);
    assert!(msg.contains("AURELIS_CACHE__MEMORY____TTL_SECS"), "{msg}");
}

#[test]
fn other_variables_are_ignored() {
    let c =
        overrides(&[("PATH", "/usr/bin"), ("AURELIS_CACHE", "x"), ("AURELIS__X", "1")]).unwrap();
    assert_eq!(c, CacheConfig::default());
}

#[test]
fn load_with_env_applies_variables_on_top_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cache.toml");
    std::fs::write(&file, "namespace = \"fromfile\"\n[memory]\nttl_secs = 42\nmax_entries = 10\n")
        .unwrap();
    let c = CacheConfig::load_with_env(
        Some(&file),
        [("AURELIS_CACHE__MEMORY__MAX_ENTRIES", "20"), ("AURELIS_CACHE__DISK__TTL_SECS", "99")],
    )
    .unwrap();
    assert_eq!(c.namespace, "fromfile");
    assert_eq!(c.memory.ttl_secs, 42);
    assert_eq!(c.memory.store.max_entries, Some(20));
    assert_eq!(c.disk.ttl_secs, 99);

    // No file: the defaults, then the variables; no variables: exactly the file.
    let c = CacheConfig::load_with_env(None, [("AURELIS_CACHE__NAMESPACE", "env")]).unwrap();
    assert_eq!(c.namespace, "env");
    assert_eq!(c.memory.ttl_secs, 300);
    let c =
        CacheConfig::load_with_env(Some(&file), std::iter::empty::<(String, String)>()).unwrap();
    assert_eq!(c, CacheConfig::from_toml_file(&file).unwrap());

    let err = CacheConfig::load_with_env(Some(&file), [("AURELIS_CACHE__MEMORY__TTL_SECS", "x")])
        .unwrap_err();
    assert!(err.to_string().contains("AURELIS_CACHE__MEMORY__TTL_SECS"), "{err}");
}

// ----- unknown keys in tier sections ---------------------------------------------------------

fn toml_error(text: &str) -> String {
    let err = CacheConfig::from_toml_str(text).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    err.to_string()
}

#[test]
fn unknown_keys_in_tier_sections_are_errors() {
    let msg = toml_error("[disk]\npaht = \"/x\"\n");
    assert!(msg.contains("paht") && msg.contains("disk"), "{msg}");
    let msg = toml_error("[memory]\nttl_sec = 5\n");
    assert!(msg.contains("ttl_sec") && msg.contains("memory"), "{msg}");
    let msg = toml_error("[memory]\nttl_secs = 5\nmax_entires = 5\nmax_byte = 5\n");
    assert!(msg.contains("max_entires") && msg.contains("max_byte"), "{msg}");
    let msg = toml_error("[breaker]\nthreshold = 3\n");
    assert!(msg.contains("threshold"), "{msg}");
    // A file goes through the same check.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cache.toml");
    std::fs::write(&file, "[disk]\npaht = \"/x\"\n").unwrap();
    let err = CacheConfig::from_toml_file(&file).unwrap_err();
    assert!(err.to_string().contains("paht"), "{err}");
}

#[test]
fn every_known_key_of_the_tier_sections_is_accepted() {
    let c = CacheConfig::from_toml_str(
        r#"
        namespace = "n"
        version = "v2"
        codec = "json"
        max_value_bytes = 1000
        strict = true
        [breaker]
        failure_threshold = 2
        failure_rate_percent = 50
        probe_interval_ms = 100
        [memory]
        enabled = true
        ttl_secs = 10
        priority = 9
        timeout_ms = 5
        name = "mem"
        max_entries = 10
        [disk]
        enabled = true
        ttl_secs = 20
        priority = 8
        timeout_ms = 6
        name = "dsk"
        path = "/tmp/x"
        max_bytes = 1000
        sweep_interval_secs = 3
        flush_every_ms = 0
        cache_capacity_bytes = 4096
        "#,
    )
    .unwrap();
    assert_eq!((c.memory.store.name.as_str(), c.disk.store.name.as_str()), ("mem", "dsk"));
    assert_eq!(c.disk.store.cache_capacity_bytes, Some(4096));
    assert_eq!(c.disk.store.flush_every_ms, None);
    assert_eq!(c.memory.timeout_ms, Some(5));
    // What a config serializes to reads back as the same config.
    let back = CacheConfig::from_toml_str(&toml::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
}

// ----- settings checked on the built cache ---------------------------------------------------

#[tokio::test]
async fn settings_take_effect_on_the_built_cache() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
        namespace = "myapp"
        version = "v9"
        codec = "json"
        strict = true
        max_value_bytes = 256
        [memory]
        ttl_secs = 60
        priority = 1
        [disk]
        ttl_secs = 7200
        priority = 5
        path = {:?}
        "#,
        dir.path().join("db")
    );
    let cache = CacheConfig::from_toml_str(&text).unwrap().build().await.unwrap();
    // Priority: higher first, so the disk tier is looked up before memory here.
    assert_eq!(cache.tier_names(), ["disk", "memory"]);
    assert_eq!(cache.tier_ttl("memory"), Some(Duration::from_secs(60)));
    assert_eq!(cache.tier_ttl("disk"), Some(Duration::from_secs(7200)));
    assert_eq!(cache.codec(), Codec::Json);
    assert!(cache.is_strict());
    assert_eq!(cache.max_value_bytes(), 256);
    assert_eq!(cache.keys().prefix(), "myapp:v9:");
    assert!(cache.keys().build_key("c", "i", None).unwrap().as_str().starts_with("myapp:v9:c:i"));

    cache.set(("c", "small"), &"x".repeat(10)).await.unwrap();
    assert_eq!(cache.get::<String>(("c", "small")).await.unwrap(), Some("x".repeat(10)));
    let err = cache.set(("c", "big"), &"x".repeat(1000)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueTooLarge);
    assert_eq!(cache.get::<String>(("c", "big")).await.unwrap(), None);

    // The defaults, for comparison: memory above disk, reference TTLs, not strict.
    let dir = tempfile::tempdir().unwrap();
    let text = format!("[disk]\npath = {:?}\n", dir.path().join("db"));
    let cache = CacheConfig::from_toml_str(&text).unwrap().build().await.unwrap();
    assert_eq!(cache.tier_names(), ["memory", "disk"]);
    assert_eq!(cache.tier_ttl("memory"), Some(Duration::from_secs(300)));
    assert_eq!(cache.tier_ttl("disk"), Some(Duration::from_secs(86_400)));
    assert_eq!(cache.codec(), Codec::MessagePack);
    assert!(!cache.is_strict());
    assert_eq!(cache.keys().prefix(), "aurelis:v1:");
}

#[tokio::test]
async fn env_overrides_take_effect_on_the_built_cache() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("[disk]\npath = {:?}\n", dir.path().join("db"));
    let config = CacheConfig::from_toml_str(&text)
        .unwrap()
        .with_overrides([
            ("AURELIS_CACHE__NAMESPACE", "2024"),
            ("AURELIS_CACHE__MEMORY__TTL_SECS", "5"),
            ("AURELIS_CACHE__MEMORY__PRIORITY", "0"),
            ("AURELIS_CACHE__MAX_VALUE_BYTES", "64"),
        ])
        .unwrap();
    let cache = config.build().await.unwrap();
    assert_eq!(cache.keys().prefix(), "2024:v1:");
    assert_eq!(cache.tier_ttl("memory"), Some(Duration::from_secs(5)));
    assert_eq!(cache.tier_names(), ["disk", "memory"]);
    assert_eq!(cache.max_value_bytes(), 64);
}

#[tokio::test]
async fn invalid_settings_fail_the_build_naming_the_field() {
    for (text, field) in [
        ("[memory]\nttl_secs = 0\n[disk]\nenabled = false\n", "memory.ttl_secs"),
        ("[memory]\ntimeout_ms = 0\n[disk]\nenabled = false\n", "memory.timeout_ms"),
        ("max_value_bytes = 0\n[disk]\nenabled = false\n", "max_value_bytes"),
    ] {
        let err = CacheConfig::from_toml_str(text).unwrap().build().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{text}");
        assert!(err.to_string().contains(field), "{text}: {err}");
    }
}

// ----- the Redis section (parsed only: no server is needed) ----------------------------------

#[cfg(feature = "redis")]
mod redis_section {
    use super::*;

    #[test]
    fn a_numeric_password_from_the_environment_stays_a_string() {
        let c = overrides(&[
            ("AURELIS_CACHE__REDIS__PASSWORD", "12345"),
            ("AURELIS_CACHE__REDIS__DB", "3"),
            ("AURELIS_CACHE__REDIS__KEY_PREFIX", "007"),
            ("AURELIS_CACHE__REDIS__ENABLED", "true"),
            ("AURELIS_CACHE__REDIS__CLUSTER_URLS", "redis://a:7000/, redis://b:7000/"),
        ])
        .unwrap();
        assert_eq!(c.redis.store.password.as_deref(), Some("12345"));
        assert_eq!(c.redis.store.db, Some(3));
        assert_eq!(c.redis.store.key_prefix, "007");
        assert!(c.redis.enabled);
        assert_eq!(c.redis.store.cluster_urls, ["redis://a:7000/", "redis://b:7000/"]);

        // Once set, the password field is a string, and stays one.
        let c = c.with_overrides([("AURELIS_CACHE__REDIS__PASSWORD", "678")]).unwrap();
        assert_eq!(c.redis.store.password.as_deref(), Some("678"));
        let c = c
            .with_overrides([("AURELIS_CACHE__REDIS__CLUSTER_URLS", r#"["redis://c:7000/"]"#)])
            .unwrap();
        assert_eq!(c.redis.store.cluster_urls, ["redis://c:7000/"]);
    }

    #[test]
    fn errors_in_the_redis_section_never_show_the_password() {
        let msg = override_error(&[
            ("AURELIS_CACHE__REDIS__PASSWORD", "hunter2"),
            ("AURELIS_CACHE__REDIS__POOL_SIZE", "many"),
        ]);
        assert!(msg.contains("AURELIS_CACHE__REDIS__POOL_SIZE"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
        let msg = override_error(&[("AURELIS_CACHE__REDIS__PASWORD", "hunter2")]);
        assert!(msg.contains("AURELIS_CACHE__REDIS__PASWORD") && !msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn unknown_keys_in_the_redis_section_are_errors() {
        let msg = toml_error("[redis]\npasword = \"x\"\n");
        assert!(msg.contains("pasword") && msg.contains("redis"), "{msg}");
        let c = CacheConfig::from_toml_str(
            "[redis]\nenabled = true\nttl_secs = 5\npriority = 4\nbackplane = false\n\
             url = \"redis://h:1/\"\npassword = \"p\"\ndb = 1\npool_size = 2\ntimeout_ms = 3\n\
             connect_timeout_ms = 4\nkey_prefix = \"k\"\nscan_count = 5\nbackplane_max_len = 6\n\
             name = \"r\"\ncluster_urls = []\n",
        )
        .unwrap();
        assert_eq!(c.redis.store.password.as_deref(), Some("p"));
        assert!(!c.redis.backplane);
    }

    /// A Redis tier nothing listens for: every operation fails at once (connection refused).
    fn unreachable_redis(threshold: u32) -> CacheConfig {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        CacheConfig::from_toml_str(&format!(
            "[breaker]\nfailure_threshold = {threshold}\nprobe_interval_ms = 60000\n\
             [redis]\nenabled = true\nbackplane = false\nurl = \"redis://127.0.0.1:{port}/\"\n\
             connect_timeout_ms = 200\n[disk]\nenabled = false\n"
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn the_breaker_settings_open_a_failing_tier_after_the_threshold() {
        let cache = unreachable_redis(3).build().await.unwrap();
        assert_eq!(cache.tier_names(), ["memory", "redis"]);
        let mut reads = 0;
        while !cache.is_tier_down("redis") && reads < 50 {
            assert_eq!(cache.get::<u8>(("c", &format!("k{reads}"))).await.unwrap(), None);
            reads += 1;
        }
        assert!(cache.is_tier_down("redis"), "still up after {reads} reads");
        let report = cache.stats_report().await;
        let redis = report.tiers.iter().find(|t| t.name == "redis").unwrap();
        assert_eq!(redis.errors, 3, "{redis:?}");

        // 0 never opens.
        let cache = unreachable_redis(0).build().await.unwrap();
        for i in 0..10 {
            assert_eq!(cache.get::<u8>(("c", &format!("k{i}"))).await.unwrap(), None);
        }
        assert!(!cache.is_tier_down("redis"));
        let report = cache.stats_report().await;
        let redis = report.tiers.iter().find(|t| t.name == "redis").unwrap();
        assert!(redis.errors >= 10, "{redis:?}");
    }

    /// A Redis tier on a real server that requires the password `12345`.
    fn real_redis(server: &aurelis_redis_harness::RedisServer, probe_ms: u64) -> CacheConfig {
        CacheConfig::from_toml_str(&format!(
            "[breaker]\nfailure_threshold = 1\nprobe_interval_ms = {probe_ms}\n\
             [redis]\nenabled = true\nbackplane = false\nurl = {:?}\n[disk]\nenabled = false\n",
            server.url_without_password()
        ))
        .unwrap()
        .with_overrides([("AURELIS_CACHE__REDIS__PASSWORD", "12345")])
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_numeric_password_and_the_probe_interval_work_on_a_real_server() {
        let mut server =
            aurelis_redis_harness::RedisServer::builder().requirepass("12345").start().unwrap();
        let fast = real_redis(&server, 50).build().await.unwrap();
        let slow = real_redis(&server, 600_000).build().await.unwrap();
        // The password from the environment authenticates: the write reaches Redis.
        fast.set(("c", "k"), &7u8).await.unwrap();
        assert_eq!(server.command(&["DBSIZE"]).unwrap().as_int(), Some(1));
        assert_eq!(fast.stats_report().await.tiers[1].errors, 0);

        // Threshold 1: one failed read opens the breaker of either cache.
        server.stop();
        for cache in [&fast, &slow] {
            assert_eq!(cache.get::<u8>(("c", "absent")).await.unwrap(), None);
            assert!(cache.is_tier_down("redis"));
        }
        server.restart().unwrap();
        // Probing every 50 ms finds the server back; every 10 minutes does not, yet.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while fast.is_tier_down("redis") {
            assert!(std::time::Instant::now() < deadline, "the breaker never closed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(slow.is_tier_down("redis"));
    }
}
