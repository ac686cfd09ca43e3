//! Cross-process single-flight through leases in a real Redis: several caches (each with its
//! own memory tier and its own in-process coalescing, as separate processes have) share one
//! Redis tier and lease store.
//!
//! Oracle: for every key, the loaders of all instances together run exactly once, and every
//! caller gets that load's value.

#![cfg(feature = "redis")]

mod common;

use common::Rng;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::{Cache, ErrorKind, MokaStore, RedisConfig, RedisStore, SingleFlight, Tier};
use aurelis_redis_harness::RedisServer;
use parking_lot::Mutex;

fn config(server: &RedisServer) -> RedisConfig {
    let mut config = RedisConfig::default();
    config.url = server.url();
    config.timeout_ms = 2_000;
    config
}

/// One "process": its own memory tier and coalescing, the shared Redis tier, leases in Redis.
async fn instance(config: &RedisConfig, lease_ttl: Duration) -> Cache {
    let redis = Arc::new(RedisStore::from_config(config).await.expect("redis store"));
    Cache::builder()
        .tier(Tier::new("memory", Arc::new(MokaStore::builder().build().unwrap())).priority(2))
        .tier(Tier::new("redis", redis.clone()).priority(1))
        .single_flight(SingleFlight::new(redis).lease_ttl(lease_ttl))
        .build_connected()
        .await
        .expect("cache")
}

fn value_of(key: u64) -> String {
    format!("answer for {key}")
}

async fn fleet_loads_each_key_once(seed: u64) {
    const INSTANCES: usize = 3;
    const TASKS: usize = 6;
    const CALLS: usize = 8;
    const KEYS: u64 = 10;
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let config = config(&server);
    let mut caches = Vec::new();
    for _ in 0..INSTANCES {
        caches.push(instance(&config, Duration::from_secs(10)).await);
    }
    let loads: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
    let mut rng = Rng(seed);
    let mut tasks = Vec::new();
    for cache in &caches {
        for _ in 0..TASKS {
            let cache = cache.clone();
            let loads = loads.clone();
            let plan: Vec<(u64, u64)> =
                (0..CALLS).map(|_| (rng.below(KEYS), 1 + rng.below(30))).collect();
            tasks.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                for (key, work_ms) in plan {
                    let loads = loads.clone();
                    let got: String = cache
                        .get_or_compute(("answers", key.to_string()), || async move {
                            *loads.lock().entry(key).or_default() += 1;
                            tokio::time::sleep(Duration::from_millis(work_ms)).await;
                            Ok::<_, std::io::Error>(value_of(key))
                        })
                        .await
                        .expect("get_or_compute");
                    seen.push((key, got));
                }
                seen
            }));
        }
    }
    let mut requested = std::collections::HashSet::new();
    for task in tasks {
        for (key, got) in task.await.expect("task") {
            assert_eq!(got, value_of(key), "seed {seed}: a caller got another key's value");
            requested.insert(key);
        }
    }
    let loads = loads.lock();
    for key in &requested {
        assert_eq!(
            loads.get(key),
            Some(&1),
            "seed {seed}: key {key} loaded {:?} times",
            loads.get(key)
        );
    }
    assert_eq!(loads.len(), requested.len());
    let awaited: u64 = caches.iter().map(|c| c.stats().snapshot().remote_loads_awaited).sum();
    let calls: u64 = caches.iter().map(|c| c.stats().snapshot().loader_calls).sum();
    assert_eq!(calls, requested.len() as u64, "seed {seed}");
    // With three instances asking for the same few keys at once, some waited for another's
    // load (the count depends on timing; that it is not zero does not).
    assert!(awaited > 0, "seed {seed}: no instance waited for another's load");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_loads_each_key_once_seeded() {
    for seed in [0x5eed_0001_u64, 0xdead_beef, 42] {
        fleet_loads_each_key_once(seed).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_gets_the_holders_value_without_loading() {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let config = config(&server);
    let holder = instance(&config, Duration::from_secs(10)).await;
    let waiter = instance(&config, Duration::from_secs(10)).await;
    let key = waiter.keys().build_key("answers", "slow", None).unwrap();
    // Another process holds the lease (taken by hand, as a process in the middle of a load).
    let lease = format!("@lease:{}", key.as_str());
    server.command(&["SET", lease.as_str(), "someone-else", "PX", "60000"]).unwrap();

    let waiting = tokio::spawn({
        let waiter = waiter.clone();
        let key = key.clone();
        async move {
            waiter
                .get_or_compute(&key, || async {
                    Ok::<_, std::io::Error>("the waiter's own load".to_string())
                })
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "the waiter waits while the lease is held");
    // The holder stores its value, then releases the lease.
    holder.set(&key, &"the holder's load".to_string()).await.unwrap();
    server.command(&["DEL", lease.as_str()]).unwrap();
    let got = waiting.await.unwrap().unwrap();
    assert_eq!(got, "the holder's load");
    let stats = waiter.stats().snapshot();
    assert_eq!(stats.loader_calls, 0);
    assert_eq!(stats.remote_loads_awaited, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_holders_lease_expires_and_a_waiter_takes_over() {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let config = config(&server);
    let cache = instance(&config, Duration::from_secs(10)).await;
    let key = cache.keys().build_key("answers", "orphan", None).unwrap();
    // A holder that died: its lease expires on its own, with no value stored.
    let lease = format!("@lease:{}", key.as_str());
    server.command(&["SET", lease.as_str(), "dead-process", "PX", "300"]).unwrap();
    let loads = Arc::new(AtomicU64::new(0));
    let got: String = cache
        .get_or_compute(&key, || {
            let loads = loads.clone();
            async move {
                loads.fetch_add(1, SeqCst);
                Ok::<_, std::io::Error>("taken over".to_string())
            }
        })
        .await
        .unwrap();
    assert_eq!(got, "taken over");
    assert_eq!(loads.load(SeqCst), 1);
    // Released after the value was stored: nobody holds the lease now.
    let exists = server.command(&["EXISTS", lease.as_str()]).unwrap();
    assert_eq!(exists.as_int(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_load_releases_the_lease_and_the_waiter_loads() {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let config = config(&server);
    let a = instance(&config, Duration::from_secs(10)).await;
    let b = instance(&config, Duration::from_secs(10)).await;
    let key = a.keys().build_key("answers", "flaky", None).unwrap();
    let lease = format!("@lease:{}", key.as_str());
    let (release_a, gate) = tokio::sync::oneshot::channel::<()>();
    let failing = tokio::spawn({
        let a = a.clone();
        let key = key.clone();
        async move {
            a.get_or_compute(&key, || async move {
                let _ = gate.await;
                Err::<String, _>(std::io::Error::other("provider down"))
            })
            .await
        }
    });
    // Wait until A holds the lease.
    for _ in 0..200 {
        if server.command(&["EXISTS", lease.as_str()]).unwrap().as_int() == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.command(&["EXISTS", lease.as_str()]).unwrap().as_int(), Some(1));
    let waiting = tokio::spawn({
        let b = b.clone();
        let key = key.clone();
        async move {
            b.get_or_compute(&key, || async { Ok::<_, std::io::Error>("b's load".to_string()) })
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "B waits for A's load");
    release_a.send(()).unwrap();
    let err = failing.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Loader);
    assert_eq!(waiting.await.unwrap().unwrap(), "b's load");
    assert_eq!(a.stats().snapshot().loader_calls, 1);
    assert_eq!(b.stats().snapshot().loader_calls, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_lease_store_does_not_stop_loads() {
    let mut server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let mut config = config(&server);
    config.timeout_ms = 200;
    let cache = instance(&config, Duration::from_secs(10)).await;
    server.stop();
    let got: String = cache
        .get_or_compute(("answers", "offline"), || async {
            Ok::<_, std::io::Error>("served".to_string())
        })
        .await
        .unwrap();
    assert_eq!(got, "served");
}

// ----- real processes ---------------------------------------------------------------------

const CHILD_URL: &str = "AURELIS_SINGLE_FLIGHT_REDIS_URL";
const CHILD_ROLE: &str = "AURELIS_SINGLE_FLIGHT_ROLE";

/// One member of a fleet of real processes: runs only when the parent test starts it
/// (ignored otherwise, so it never passes as a test that checks nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run in child processes by the real-process tests of this file"]
async fn child_fleet_member() {
    use aurelis_cache::{Bytes, Store};
    let url = std::env::var(CHILD_URL).expect("started by a parent test");
    let role = std::env::var(CHILD_ROLE).expect("started by a parent test");
    let mut config = RedisConfig::default();
    config.url = url;
    config.timeout_ms = 2_000;
    let raw = Arc::new(RedisStore::from_config(&config).await.expect("redis"));
    let pid = std::process::id();
    match role.as_str() {
        "member" => {
            let cache = instance(&config, Duration::from_secs(10)).await;
            raw.set(&format!("ready:{pid}"), Bytes::from_static(b"1"), None).await.unwrap();
            // Every member calls at once: wait for the parent's go.
            while raw.get("go").await.unwrap().is_none() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let loader_store = raw.clone();
            let got: String = cache
                .get_or_compute(("answers", "fleet"), || async move {
                    let ran = format!("loader-ran:{pid}");
                    loader_store.set(&ran, Bytes::from_static(b"1"), None).await?;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, aurelis_cache::Error>(format!("answer of process {pid}"))
                })
                .await
                .expect("get_or_compute");
            println!("\nGOT {got}");
        }
        "holder" => {
            // Takes the lease (1 s, renewed while it loads) and never finishes: the parent
            // kills this process in the middle of the load.
            let cache = instance(&config, Duration::from_secs(1)).await;
            let loader_store = raw.clone();
            let _ = cache
                .get_or_compute(("answers", "orphaned"), || async move {
                    loader_store.set("holder-started", Bytes::from_static(b"1"), None).await?;
                    tokio::time::sleep(Duration::from_secs(600)).await;
                    Ok::<_, aurelis_cache::Error>("never".to_string())
                })
                .await;
        }
        other => panic!("unknown role {other}"),
    }
}

fn spawn_child(server: &RedisServer, role: &str) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_fleet_member", "--nocapture", "--test-threads=1"])
        .env(CHILD_URL, server.url())
        .env(CHILD_ROLE, role)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn a child process")
}

fn keys_matching(server: &RedisServer, pattern: &str) -> usize {
    // `KEYS` is fine on the test's own small server.
    match server.command(&["KEYS", pattern]).unwrap() {
        aurelis_redis_harness::Reply::Array(Some(keys)) => keys.len(),
        other => panic!("unexpected KEYS reply {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_processes_make_one_provider_call() {
    const MEMBERS: usize = 3;
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let children: Vec<_> = (0..MEMBERS).map(|_| spawn_child(&server, "member")).collect();
    for _ in 0..3000 {
        if keys_matching(&server, "ready:*") == MEMBERS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(keys_matching(&server, "ready:*"), MEMBERS, "every child started");
    server.command(&["SET", "go", "1"]).unwrap();
    let mut answers = Vec::new();
    for child in children {
        let out = child.wait_with_output().expect("child output");
        assert!(out.status.success(), "a child failed: {}", String::from_utf8_lossy(&out.stdout));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let got = stdout
            .lines()
            .find_map(|l| l.split_once("GOT ").map(|(_, v)| v))
            .unwrap_or_else(|| panic!("no answer in {stdout}"))
            .to_owned();
        answers.push(got);
    }
    assert_eq!(keys_matching(&server, "loader-ran:*"), 1, "one provider call for the fleet");
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "every process got that call's answer: {answers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_process_is_taken_over() {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
    let mut holder = spawn_child(&server, "holder");
    for _ in 0..3000 {
        if server.command(&["EXISTS", "holder-started"]).unwrap().as_int() == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.command(&["EXISTS", "holder-started"]).unwrap().as_int(), Some(1));
    holder.kill().expect("kill the holder mid-load");
    holder.wait().unwrap();
    let cache = instance(&config(&server), Duration::from_secs(10)).await;
    let key = cache.keys().build_key("answers", "orphaned", None).unwrap();
    let lease = format!("@lease:{}", key.as_str());
    // The dead holder's lease is still there: a waiter may not load before it expires.
    assert_eq!(server.command(&["EXISTS", lease.as_str()]).unwrap().as_int(), Some(1));
    let loads = Arc::new(AtomicU64::new(0));
    let got: String = cache
        .get_or_compute(&key, || {
            let loads = loads.clone();
            async move {
                loads.fetch_add(1, SeqCst);
                Ok::<_, std::io::Error>("taken over".to_string())
            }
        })
        .await
        .unwrap();
    assert_eq!(got, "taken over");
    assert_eq!(loads.load(SeqCst), 1);
    assert_eq!(server.command(&["EXISTS", lease.as_str()]).unwrap().as_int(), Some(0));
}
