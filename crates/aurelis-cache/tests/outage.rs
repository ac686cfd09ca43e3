//! Outages against real `redis-server` processes: Redis unreachable at start-up, an instance
//! partitioned from Redis (through a TCP proxy that black-holes or cuts its traffic) while it
//! writes, deletes and invalidates, and a dead cluster master.

#![cfg(feature = "redis")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::{
    BreakerConfig, Cache, CacheConfig, MokaStore, RedisBackplane, RedisConfig, RedisStore,
    SledStore, Store, Tier,
};
use aurelis_redis_harness::{free_port, RedisCluster, RedisServer, TcpProxy};
use common::eventually;

fn config_for(url: String) -> RedisConfig {
    let mut config = RedisConfig::default();
    config.url = url;
    config.timeout_ms = 200;
    config.connect_timeout_ms = 200;
    config
}

/// memory over Redis over a disk of its own, with the backplane, all through `config`.
async fn instance(config: &RedisConfig, dir: &std::path::Path) -> (Cache, Arc<dyn Store>) {
    instance_probing(config, dir, Duration::from_millis(50)).await
}

async fn instance_probing(
    config: &RedisConfig,
    dir: &std::path::Path,
    probe_every: Duration,
) -> (Cache, Arc<dyn Store>) {
    let memory: Arc<dyn Store> = Arc::new(MokaStore::builder().build().unwrap());
    let redis: Arc<dyn Store> = Arc::new(RedisStore::from_config(config).await.unwrap());
    let disk: Arc<dyn Store> = Arc::new(SledStore::builder().path(dir).build().unwrap());
    let breaker = BreakerConfig::new(3, probe_every);
    let cache = Cache::builder()
        .tier(Tier::new("memory", memory.clone()).priority(3).breaker(breaker.clone()))
        .tier(Tier::new("redis", redis).priority(2).breaker(breaker.clone()))
        .tier(Tier::new("disk", disk).priority(1).breaker(breaker))
        .backplane(Arc::new(RedisBackplane::new(config, "aurelis", "v1").unwrap()))
        .build_connected()
        .await
        .unwrap();
    (cache, memory)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_starts_and_serves_while_redis_is_unreachable_then_joins_it() {
    let port = free_port().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[redis]\nenabled = true\nurl = \"redis://127.0.0.1:{port}\"\ntimeout_ms = 200\nconnect_timeout_ms = 200\n[disk]\npath = {:?}\n",
        dir.path().join("db")
    );
    let config = CacheConfig::from_toml_str(&text).unwrap();
    let a = config.build().await.expect("builds with Redis unreachable");
    a.set(("doc", "d"), &"v1".to_string()).await.expect("memory and disk take the write");
    assert_eq!(a.get::<String>(("doc", "d")).await.unwrap().as_deref(), Some("v1"));

    let server = RedisServer::builder().port(port).start().unwrap_or_else(|e| panic!("{e}"));
    // Redis joins: new writes reach it once the breaker closed.
    let key = a.keys().build_key("doc", "e", None).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            a.set(("doc", "e"), &"v2".to_string()).await.unwrap();
            server.command(&["EXISTS", key.as_str()]).unwrap().as_int() == Some(1)
        })
        .await,
        "Redis never joined"
    );
    // The key written while Redis was away was never written there: nothing old to serve.
    let d = a.keys().build_key("doc", "d", None).unwrap();
    assert_eq!(server.command(&["EXISTS", d.as_str()]).unwrap().as_int(), Some(0));
    // And the backplane joined too: another instance's delete reaches this one.
    let dir_b = tempfile::tempdir().unwrap();
    let (b, _) = instance(&config_for(server.url()), dir_b.path()).await;
    b.delete(("doc", "e")).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            a.get::<String>(("doc", "e")).await.unwrap().is_none()
        })
        .await,
        "the other instance's delete never reached this one"
    );
}

/// The reproduction: memory + Redis + disk; Redis stops answering one instance
/// until its breaker opened; that instance then overwrites and deletes keys; once Redis
/// answers again, no instance may read the old values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_deletes_made_while_redis_was_unreachable_are_not_undone() {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let proxy = TcpProxy::start(server.port()).unwrap();
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // A probes Redis only every 2 s: its announcements must still wait for its repair.
    let (a, a_memory) =
        instance_probing(&config_for(proxy.url()), dirs.0.path(), Duration::from_secs(2)).await;
    let (b, _) = instance(&config_for(server.url()), dirs.1.path()).await;
    let ids: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    for id in &ids {
        a.set(("k", id), &1u64).await.unwrap();
        a.set(("d", id), &1u64).await.unwrap();
    }
    // B has applied everything A announced so far.
    assert!(
        eventually(Duration::from_secs(10), || async {
            b.stats().snapshot().remote_applied >= a.stats().snapshot().published
        })
        .await
    );
    proxy.blackhole();
    // As in the issue: Redis stops answering until the breaker opens (a write racing the
    // black-holing could still get through, and be announced at once, rightly).
    let mut probes = 0;
    while !a.is_tier_down("redis") {
        let _ = a.get::<u64>(("probe", &probes.to_string())).await;
        probes += 1;
        assert!(probes < 100, "the breaker never opened");
    }
    for id in &ids {
        a.set(("k", id), &2u64).await.expect("a write never fails while a tier can take it");
        a.delete(("d", id)).await.expect("a delete never fails for a tier outage");
    }
    assert!(a.is_tier_down("redis"), "the breaker should have opened");
    let applied_before = b.stats().snapshot().remote_applied;
    proxy.heal();
    // B: as soon as it has received any of A's announcements, it must not read an old value
    // (Redis still holds them until A's repair removed them: A may announce only after that).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while b.stats().snapshot().remote_applied == applied_before {
        assert!(std::time::Instant::now() < deadline, "A's announcements never reached B");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for id in &ids {
        assert_ne!(b.get::<u64>(("k", id)).await.unwrap(), Some(1), "B read a replaced value");
        assert_eq!(b.get::<u64>(("d", id)).await.unwrap(), None, "B read a deleted value");
    }
    // A: whatever the repair has done so far, the old values never come back, even from Redis
    // (its memory is emptied to force reads through the lower tiers).
    for round in 0..10 {
        a_memory.clear().await.unwrap();
        for id in &ids {
            assert_eq!(a.get::<u64>(("k", id)).await.unwrap(), Some(2), "round {round}: old value");
            assert_eq!(
                a.get::<u64>(("d", id)).await.unwrap(),
                None,
                "round {round}: deleted value"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // B never had A's new values; once A caught up and announced it, B reads no old value.
    assert!(
        eventually(Duration::from_secs(10), || async {
            !a.is_tier_down("redis") && a.tier_pending("redis") == 0
        })
        .await,
        "A never caught up with Redis"
    );
    assert_eq!(a.flush(Duration::from_secs(10)).await.unwrap(), 0);
    assert!(
        eventually(Duration::from_secs(10), || async {
            let mut clean = true;
            for id in &ids {
                clean &= b.get::<u64>(("k", id)).await.unwrap() != Some(1);
                clean &= b.get::<u64>(("d", id)).await.unwrap().is_none();
            }
            clean
        })
        .await,
        "B still reads values A replaced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_category_invalidated_during_a_partition_stays_invalidated_after_it_heals() {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let proxy = TcpProxy::start(server.port()).unwrap();
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, _) = instance(&config_for(server.url()), dirs.0.path()).await;
    let (b, b_memory) = instance(&config_for(proxy.url()), dirs.1.path()).await;
    for i in 0..10 {
        a.set(("session", &i.to_string()), &i).await.unwrap();
        // B reads them: copies in its memory tier.
        assert_eq!(b.get::<i32>(("session", &i.to_string())).await.unwrap(), Some(i));
    }
    proxy.cut();
    a.invalidate_category("session").await.unwrap();
    for i in 0..10 {
        assert_eq!(a.get::<i32>(("session", &i.to_string())).await.unwrap(), None);
    }
    proxy.heal();
    // Once B is back (its backplane resumes and replays A's mark), nothing old is served, from
    // memory, Redis or disk.
    assert!(
        eventually(Duration::from_secs(15), || async {
            let mut none = true;
            for i in 0..10 {
                none &= b.get::<i32>(("session", &i.to_string())).await.unwrap().is_none();
            }
            none
        })
        .await,
        "B serves entries of a category invalidated while it was partitioned"
    );
    b_memory.clear().await.unwrap();
    for i in 0..10 {
        assert_eq!(b.get::<i32>(("session", &i.to_string())).await.unwrap(), None);
    }
    // A process started later honours the mark too (kept in Redis).
    let dir_c = tempfile::tempdir().unwrap();
    let (c, _) = instance(&config_for(server.url()), dir_c.path()).await;
    assert_eq!(c.get::<i32>(("session", "3")).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_cluster_master_opens_the_breaker() {
    let mut cluster = RedisCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let mut config = RedisConfig::default();
    config.cluster_urls = cluster.urls();
    config.timeout_ms = 200;
    config.connect_timeout_ms = 200;
    let redis: Arc<dyn Store> = Arc::new(RedisStore::from_config(&config).await.unwrap());
    let memory: Arc<dyn Store> = Arc::new(MokaStore::builder().build().unwrap());
    let breaker = BreakerConfig::new(5, Duration::from_secs(60));
    let cache = Cache::builder()
        .tier(Tier::new("memory", memory).priority(2))
        .tier(Tier::new("redis", redis).priority(1).breaker(breaker))
        .build()
        .unwrap();
    for i in 0..30 {
        cache.set(("doc", &i.to_string()), &i).await.unwrap();
    }
    cluster.nodes_mut()[0].stop();
    // Reads of keys on the two live masters succeed, the dead one's fail: about a third of the
    // calls. Consecutive failures are rare, but the failure rate opens the breaker.
    let mut i = 0;
    while !cache.is_tier_down("redis") {
        let _ = cache.get::<i32>(("other", &i.to_string())).await.unwrap();
        i += 1;
        assert!(i < 300, "the breaker never opened with one master of three dead");
    }
    // Open: reads no longer wait on the dead master.
    let skipped_before = cache.stats_report().await.tiers[1].skipped;
    for j in 0..20 {
        assert_eq!(cache.get::<i32>(("other", &format!("x{j}"))).await.unwrap(), None);
    }
    assert!(cache.stats_report().await.tiers[1].skipped >= skipped_before + 20);
}
