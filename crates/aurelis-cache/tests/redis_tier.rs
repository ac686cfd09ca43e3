//! The Redis tier through the facade, against real `redis-server` processes started by the
//! harness: sharing between instances, the invalidation backplane, outages (kill and restart
//! the server under load), damaged bytes in Redis, the reference layering from config, and
//! Redis Cluster.

#![cfg(feature = "redis")]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::{
    BreakerConfig, Cache, CacheConfig, MokaStore, RedisBackplane, RedisConfig, RedisStore, Store,
    Tier,
};
use aurelis_redis_harness::{RedisCluster, RedisServer};
use common::{eventually, tier};

fn start_server() -> RedisServer {
    RedisServer::start().unwrap_or_else(|e| panic!("{e}"))
}

fn redis_config(url: String) -> RedisConfig {
    let mut config = RedisConfig::default();
    config.url = url;
    config.timeout_ms = 300;
    config.connect_timeout_ms = 300;
    config
}

/// memory over Redis, with the backplane: one "process".
async fn instance(config: &RedisConfig) -> (Cache, Arc<dyn Store>) {
    let memory: Arc<dyn Store> = Arc::new(MokaStore::builder().build().unwrap());
    let redis: Arc<dyn Store> = Arc::new(RedisStore::from_config(config).await.unwrap());
    let breaker = BreakerConfig::new(3, Duration::from_millis(100));
    let cache = Cache::builder()
        .tier(Tier::new("memory", memory.clone()).ttl(Duration::from_secs(300)))
        .tier(
            Tier::new("redis", redis)
                .ttl(Duration::from_secs(3600))
                .timeout(Duration::from_millis(500))
                .breaker(breaker),
        )
        .backplane(Arc::new(RedisBackplane::new(config, "aurelis", "v1").unwrap()))
        .build_connected()
        .await
        .unwrap();
    (cache, memory)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_redis_and_see_each_others_invalidations() {
    let server = start_server();
    let config = redis_config(server.url());
    let (a, _) = instance(&config).await;
    let (b, b_memory) = instance(&config).await;

    a.set(("user_data", "42"), &"v1".to_string()).await.unwrap();
    // B finds it in Redis and keeps a copy in its own memory tier.
    // (A's own write announcement may reach B after B copied the value and remove the copy
    // again: B cannot tell which came first, so it reads again.)
    let key = b.keys().build_key("user_data", "42", None).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            b.get::<String>(("user_data", "42")).await.unwrap().as_deref() == Some("v1")
                && b_memory.get(key.as_str()).await.unwrap().is_some()
        })
        .await,
        "B never kept a copy in its memory tier"
    );

    // A overwrites: B's memory copy is dropped through the backplane, B reads the new value.
    a.set(("user_data", "42"), &"v2".to_string()).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            b.get::<String>(("user_data", "42")).await.unwrap().as_deref() == Some("v2")
        })
        .await,
        "B kept serving its stale memory copy"
    );

    // A deletes: B stops serving it.
    a.delete(("user_data", "42")).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            b.get::<String>(("user_data", "42")).await.unwrap().is_none()
        })
        .await
    );

    // Category and tag invalidations travel too.
    b.set(("session", "s1"), &1u8).await.unwrap();
    a.get::<u8>(("session", "s1")).await.unwrap();
    b.invalidate_category("session").await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            a.get::<u8>(("session", "s1")).await.unwrap().is_none()
        })
        .await,
        "category invalidation did not reach A"
    );

    let tagged = aurelis_cache::SetOptions::new().tag("team:7");
    a.set_with(("profile", "p"), &1u8, &tagged).await.unwrap();
    assert_eq!(b.get::<u8>(("profile", "p")).await.unwrap(), Some(1));
    a.invalidate_tag("team:7").await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            b.get::<u8>(("profile", "p")).await.unwrap().is_none()
        })
        .await,
        "tag invalidation did not reach B"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_redis_under_load_fails_no_caller_and_recovery_needs_no_restart() {
    let mut server = start_server();
    let config = redis_config(server.url());
    let (a, _) = instance(&config).await;
    let (b, _) = instance(&config).await;

    a.set(("doc", "stale-candidate"), &"old".to_string()).await.unwrap();
    assert_eq!(b.get::<String>(("doc", "stale-candidate")).await.unwrap().as_deref(), Some("old"));

    // Load on both instances for the whole test; every call must succeed.
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let ops = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for cache in [a.clone(), b.clone()] {
        let (stop, errors, ops) = (stop.clone(), errors.clone(), ops.clone());
        load.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(SeqCst) {
                let id = (i % 50).to_string();
                if cache.set(("load", &id), &i).await.is_err() {
                    errors.fetch_add(1, SeqCst);
                }
                if cache.get::<u64>(("load", &id)).await.is_err() {
                    errors.fetch_add(1, SeqCst);
                }
                ops.fetch_add(2, SeqCst);
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    server.stop();
    assert!(
        eventually(Duration::from_secs(10), || async {
            a.is_tier_down("redis") && b.is_tier_down("redis")
        })
        .await,
        "the breakers did not open"
    );
    // While Redis is down, A changes a value B holds in memory; B cannot be told.
    a.set(("doc", "stale-candidate"), &"new".to_string()).await.unwrap();
    let during = ops.load(SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(ops.load(SeqCst) > during, "callers stalled while Redis was down");

    server.restart().unwrap();
    assert!(
        eventually(Duration::from_secs(15), || async {
            !a.is_tier_down("redis") && !b.is_tier_down("redis")
        })
        .await,
        "the cache did not go back to Redis after it returned"
    );
    // B's backplane reconnected and flushed B's memory tier: its "old" copy is gone.
    assert!(
        eventually(Duration::from_secs(10), || async {
            b.get::<String>(("doc", "stale-candidate")).await.unwrap().as_deref() != Some("old")
        })
        .await,
        "B still serves a memory entry that was invalidated while the backplane was down"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, SeqCst);
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(errors.load(SeqCst), 0, "a caller saw an error during the outage");

    // Redis is used again: a write from A is visible to B through Redis.
    a.set(("doc", "after"), &"back".to_string()).await.unwrap();
    let hits_before = tier(&b.stats_report().await, "redis").hits;
    assert_eq!(b.get::<String>(("doc", "after")).await.unwrap().as_deref(), Some("back"));
    assert_eq!(tier(&b.stats_report().await, "redis").hits, hits_before + 1);
    let report = a.stats_report().await;
    assert!(tier(&report, "redis").errors > 0);
    assert!(tier(&report, "redis").skipped > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_in_redis_are_a_counted_miss() {
    let server = start_server();
    let config = redis_config(server.url());
    let (cache, _) = instance(&config).await;
    let key = cache.keys().build_key("doc", "garbage", None).unwrap();
    let garbage: &[u8] = b"\x00\xffnot an envelope";
    server.command(&[b"SET".as_slice(), key.as_str().as_bytes(), garbage]).unwrap();
    assert_eq!(cache.get::<String>(("doc", "garbage")).await.unwrap(), None);
    let report = cache.stats_report().await;
    assert_eq!(report.overall.corrupt, 1);
    assert_eq!(tier(&report, "redis").corrupt, 1);
    // Not deleted from the shared tier (another process may have written a fresh value
    // meanwhile); the next write replaces it.
    cache.set(("doc", "garbage"), &"fresh".to_string()).await.unwrap();
    assert_eq!(cache.get::<String>(("doc", "garbage")).await.unwrap().as_deref(), Some("fresh"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_gives_the_reference_layering() {
    let server = start_server();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[redis]\nenabled = true\nurl = {:?}\n[disk]\npath = {:?}\n",
        server.url(),
        dir.path().join("db")
    );
    let cache = CacheConfig::from_toml_str(&text).unwrap().build().await.unwrap();
    assert_eq!(cache.tier_names(), ["memory", "redis", "disk"]);
    cache.set(("doc", "d"), &"v".to_string()).await.unwrap();
    let key = cache.keys().build_key("doc", "d", None).unwrap();
    let pttl = server.command(&["PTTL", key.as_str()]).unwrap().as_int().unwrap();
    assert!(pttl > 3_500_000 && pttl <= 3_600_000, "Redis TTL {pttl} ms is not the 3600 s cap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_facade_works_on_redis_cluster() {
    let cluster = RedisCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let mut config = RedisConfig::default();
    config.cluster_urls = cluster.urls();
    config.timeout_ms = 1000;
    let redis: Arc<dyn Store> = Arc::new(RedisStore::from_config(&config).await.unwrap());
    let cache = Cache::builder().tier(Tier::new("redis", redis)).build().unwrap();
    let ids: Vec<String> = (0..60).map(|i| format!("user{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        cache.set(("cluster_doc", id), &i).await.unwrap();
    }
    for node in cluster.nodes() {
        let n = node.command(&["DBSIZE"]).unwrap().as_int().unwrap();
        assert!(n > 0, "master {} holds no key: keys did not spread over slots", node.port());
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let got = cache.get_many::<usize>(refs.iter().map(|id| ("cluster_doc", id))).await.unwrap();
    assert_eq!(got, (0..60).map(Some).collect::<Vec<_>>());
    cache.invalidate_category("cluster_doc").await.unwrap();
    let got = cache.get_many::<usize>(refs.iter().map(|id| ("cluster_doc", id))).await.unwrap();
    assert!(got.iter().all(Option::is_none), "the category mark covers every master's keys");
}

/// memory over Redis over a disk tier of its own, with the backplane.
async fn instance_with_disk(config: &RedisConfig, dir: &std::path::Path) -> Cache {
    let memory: Arc<dyn Store> = Arc::new(MokaStore::builder().build().unwrap());
    let redis: Arc<dyn Store> = Arc::new(RedisStore::from_config(config).await.unwrap());
    let disk: Arc<dyn Store> =
        Arc::new(aurelis_cache::SledStore::builder().path(dir).build().unwrap());
    Cache::builder()
        .tier(Tier::new("memory", memory).priority(3))
        .tier(Tier::new("redis", redis).priority(2))
        .tier(Tier::new("disk", disk).priority(1))
        .backplane(Arc::new(RedisBackplane::new(config, "aurelis", "v1").unwrap()))
        .build_connected()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_invalidations_reach_the_other_processs_disk_tier() {
    let server = start_server();
    let config = redis_config(server.url());
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = instance_with_disk(&config, dirs.0.path()).await;
    let b = instance_with_disk(&config, dirs.1.path()).await;

    // B writes: B's memory, Redis and B's own disk hold it.
    b.set(("doc", "d"), &"v1".to_string()).await.unwrap();
    assert_eq!(a.get::<String>(("doc", "d")).await.unwrap().as_deref(), Some("v1"));
    // A deletes: Redis loses it, and B must drop it from memory and from its disk.
    a.delete(("doc", "d")).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            b.get::<String>(("doc", "d")).await.unwrap().is_none()
        })
        .await,
        "B's disk tier still serves an entry deleted by A"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_model_clear_and_set_many_travel_over_the_backplane() {
    let server = start_server();
    let config = redis_config(server.url());
    let (a, _) = instance(&config).await;
    let (b, b_memory) = instance(&config).await;
    let seen_by_b = |category: &'static str, id: &'static str| {
        let b = b.clone();
        async move { b.get::<u8>((category, id)).await.unwrap() }
    };

    // set_many: one announcement for many keys; B's memory copies are dropped.
    a.set_many(&[(("batch", "x"), 1u8), (("batch", "y"), 1)], &Default::default()).await.unwrap();
    assert_eq!(seen_by_b("batch", "x").await, Some(1));
    assert_eq!(seen_by_b("batch", "y").await, Some(1));
    a.set_many(&[(("batch", "x"), 2u8), (("batch", "y"), 2)], &Default::default()).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            seen_by_b("batch", "x").await == Some(2) && seen_by_b("batch", "y").await == Some(2)
        })
        .await,
        "set_many did not reach B"
    );

    // Pattern.
    a.set(("doc", "gpt-a"), &1u8).await.unwrap();
    a.set(("doc", "claude"), &1u8).await.unwrap();
    assert_eq!(seen_by_b("doc", "gpt-a").await, Some(1));
    a.invalidate_pattern("doc:gpt-*").await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async { seen_by_b("doc", "gpt-a").await.is_none() })
            .await
    );
    assert_eq!(seen_by_b("doc", "claude").await, Some(1));

    // Model.
    let key = a.keys().build_model_key("gpt-4o", "hi", &aurelis_cache::Params::new()).unwrap();
    a.set(&key, &5u8).await.unwrap();
    assert_eq!(b.get::<u8>(&key).await.unwrap(), Some(5));
    a.invalidate_model("gpt-4o").await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async { b.get::<u8>(&key).await.unwrap().is_none() })
            .await
    );

    // Clear.
    assert_eq!(seen_by_b("doc", "claude").await, Some(1));
    a.clear().await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async { seen_by_b("doc", "claude").await.is_none() })
            .await
    );
    // B's memory copy may still sit in moka, but it is never served again.
    let claude = b.keys().build_key("doc", "claude", None).unwrap();
    let _ = b_memory.get(claude.as_str()).await.unwrap();
    assert_eq!(seen_by_b("doc", "claude").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_gets_every_invalidation_published_after_it_was_built() {
    let server = start_server();
    let config = redis_config(server.url());
    let (a, _) = instance(&config).await;
    for round in 0..5 {
        let (b, _) = instance(&config).await;
        // Published right after B was built, possibly before B's reader first read the
        // stream: B must still get it.
        a.set(("doc", &format!("r{round}")), &1u8).await.unwrap();
        assert!(
            eventually(Duration::from_secs(10), || async {
                b.stats().snapshot().remote_applied >= 1
            })
            .await,
            "round {round}: an invalidation published after B was built never reached B"
        );
    }
}
