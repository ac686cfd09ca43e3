//! Redis Cluster specifics: keys spread over all three masters, `get_many` and prefix
//! deletion across slots, and the whole-database paths (no key prefix) on every master.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache_core::{ErrorKind, Store};
use aurelis_cache_redis::RedisStore;
use aurelis_redis_harness::{RedisCluster, RedisServer, Reply};
use bytes::Bytes;

async fn cluster(shared: bool) -> Arc<RedisCluster> {
    let start =
        move || if shared { RedisCluster::shared() } else { RedisCluster::start().map(Arc::new) };
    tokio::task::spawn_blocking(start).await.expect("join").unwrap_or_else(|e| panic!("{e}"))
}

async fn store(cluster: &RedisCluster, prefix: &str) -> RedisStore {
    RedisStore::builder()
        .cluster_urls(cluster.urls())
        .key_prefix(prefix)
        .timeout_ms(5_000)
        .scan_count(10)
        .build()
        .await
        .expect("cluster store")
}

/// Keys under `pattern` on one node, by SCAN over a raw connection.
fn keys_on(node: &RedisServer, pattern: &str) -> HashSet<Vec<u8>> {
    let mut keys = HashSet::new();
    let mut cursor = "0".to_owned();
    loop {
        let reply =
            node.command(&["SCAN", &cursor, "MATCH", pattern, "COUNT", "100"]).expect("scan");
        let Reply::Array(Some(mut parts)) = reply else { panic!("bad SCAN reply {reply:?}") };
        let Reply::Array(Some(batch)) = parts.pop().expect("keys") else { panic!("bad keys") };
        keys.extend(batch.into_iter().filter_map(|k| k.as_bytes().map(<[u8]>::to_vec)));
        cursor = parts.pop().and_then(|c| c.as_str().map(str::to_owned)).expect("cursor");
        if cursor == "0" {
            return keys;
        }
    }
}

fn dbsize(node: &RedisServer) -> i64 {
    node.command(&["DBSIZE"]).expect("dbsize").as_int().expect("int")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_spread_over_every_master_and_batches_cross_slots() {
    let cluster = cluster(true).await;
    let prefix = format!("spread:{}:", std::process::id());
    let store = store(&cluster, &prefix).await;

    let keys: Vec<String> = (0..120).map(|i| format!("item:{i}")).collect();
    let entries: Vec<(&str, Bytes)> =
        keys.iter().map(|k| (k.as_str(), Bytes::from(format!("value of {k}")))).collect();
    store.set_many(&entries, None).await.expect("set_many across slots");

    // Every master holds some of the keys, and together exactly all of them.
    let pattern = format!("{prefix}*");
    let per_node: Vec<HashSet<Vec<u8>>> =
        cluster.nodes().iter().map(|n| keys_on(n, &pattern)).collect();
    for (node, held) in cluster.nodes().iter().zip(&per_node) {
        assert!(!held.is_empty(), "master {} holds none of the keys", node.port());
    }
    assert_eq!(per_node.iter().map(HashSet::len).sum::<usize>(), keys.len());
    let slots: HashSet<i64> = keys
        .iter()
        .map(|k| {
            let full = format!("{prefix}{k}");
            cluster.nodes()[0]
                .command(&["CLUSTER", "KEYSLOT", &full])
                .expect("keyslot")
                .as_int()
                .expect("slot")
        })
        .collect();
    assert!(slots.len() > 50, "keys landed on only {} slots", slots.len());

    // One get_many across all slots, in order, with misses and a duplicate.
    let mut asked: Vec<&str> = keys.iter().rev().map(String::as_str).collect();
    asked.insert(7, "item:missing");
    asked.push("item:3");
    let got = store.get_many(&asked).await.expect("get_many across slots");
    for (key, value) in asked.iter().zip(&got) {
        let want = (*key != "item:missing").then(|| Bytes::from(format!("value of {key}")));
        assert_eq!(value, &want, "{key}");
    }

    // Prefix deletion scans every master and unlinks across slots.
    let deleted = store.delete_prefix("item:1").await.expect("delete_prefix");
    let expected = keys.iter().filter(|k| k.starts_with("item:1")).count() as u64;
    assert_eq!(deleted, expected);
    assert_eq!(store.len().await.expect("len"), keys.len() as u64 - expected);
    assert_eq!(store.get("item:1").await.expect("get"), None);
    assert!(store.get("item:2").await.expect("get").is_some());

    let removed = store.delete_pattern("item:?").await.expect("delete_pattern");
    assert_eq!(removed, 9, "item:0 and item:2..item:9");
    assert!(store.size_bytes().await.expect("size_bytes") > 0);
    store.clear().await.expect("clear");
    assert_eq!(store.len().await.expect("len"), 0);
    for node in cluster.nodes() {
        assert!(keys_on(node, &pattern).is_empty(), "clear left keys on {}", node.port());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_prefix_len_size_and_clear_cover_every_master() {
    let cluster = cluster(false).await; // its own cluster: it flushes everything
    let store = store(&cluster, "").await;
    let keys: Vec<String> = (0..90).map(|i| format!("whole:{i}")).collect();
    for key in &keys {
        store
            .set(key, Bytes::from(vec![1u8; 512]), Some(Duration::from_secs(600)))
            .await
            .expect("set");
    }
    for node in cluster.nodes() {
        assert!(dbsize(node) > 0, "master {} holds no key", node.port());
    }
    assert_eq!(store.len().await.expect("len (DBSIZE on every master)"), keys.len() as u64);
    assert!(store.size_bytes().await.expect("size_bytes") >= 90 * 512);

    store.clear().await.expect("clear (FLUSHDB on every master)");
    for node in cluster.nodes() {
        assert_eq!(dbsize(node), 0, "master {} was not flushed", node.port());
    }
    assert_eq!(store.len().await.expect("len"), 0);
    store.set("whole:after", Bytes::from_static(b"v"), None).await.expect("set after clear");
    assert_eq!(store.get("whole:after").await.expect("get"), Some(Bytes::from_static(b"v")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_master_fails_without_hanging_and_the_store_recovers() {
    let mut cluster = match Arc::try_unwrap(cluster(false).await) {
        Ok(cluster) => cluster,
        Err(_) => unreachable!("a cluster of its own has one owner"),
    };
    let store = RedisStore::builder()
        .cluster_urls(cluster.urls())
        .timeout_ms(500)
        .connect_timeout_ms(500)
        .build()
        .await
        .expect("cluster store");
    let keys: Vec<String> = (0..30).map(|i| format!("outage:{i}")).collect();
    for key in &keys {
        store.set(key, Bytes::from_static(b"v"), None).await.expect("set");
    }

    // A few keys on the master that goes down, and all the others. The node stays down for
    // a few operations only, less than the cluster's node timeout, so the other masters do
    // not mark it failed (that would take the whole cluster down for a while).
    let on_last: HashSet<Vec<u8>> = keys_on(&cluster.nodes()[2], "outage:*");
    let (down_keys, up_keys): (Vec<&String>, Vec<&String>) =
        keys.iter().partition(|k| on_last.contains(k.as_bytes()));
    assert!(!down_keys.is_empty() && !up_keys.is_empty(), "keys did not spread");

    cluster.nodes_mut()[2].stop();
    for key in down_keys.iter().take(2) {
        let err = tokio::time::timeout(Duration::from_secs(10), store.get(key))
            .await
            .unwrap_or_else(|_| panic!("get {key} hung with its master down"))
            .expect_err("its master is down");
        assert!(
            matches!(err.kind(), ErrorKind::Backend | ErrorKind::Timeout),
            "unexpected error kind: {err}"
        );
    }

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.nodes_mut()[2].restart()?;
        cluster.wait_ok(Duration::from_secs(30))?;
        Ok::<_, aurelis_redis_harness::HarnessError>(cluster)
    })
    .await
    .expect("join")
    .unwrap_or_else(|e| panic!("{e}"));

    // The same store serves every key again (the restarted master lost its data).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for key in &keys {
        loop {
            match store.set(key, Bytes::from_static(b"again"), None).await {
                Ok(()) => break,
                Err(e) => {
                    assert!(std::time::Instant::now() < deadline, "{key} did not recover: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        assert_eq!(store.get(key).await.expect("get"), Some(Bytes::from_static(b"again")));
    }
    tokio::task::spawn_blocking(move || drop(cluster)).await.expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_protected_cluster_uses_the_config_password() {
    let cluster =
        tokio::task::spawn_blocking(|| RedisCluster::builder().requirepass("cluster-pw").start())
            .await
            .expect("join")
            .unwrap_or_else(|e| panic!("{e}"));
    let urls: Vec<String> = cluster.nodes().iter().map(RedisServer::url_without_password).collect();
    let store = RedisStore::builder()
        .cluster_urls(urls)
        .password("cluster-pw")
        .timeout_ms(5_000)
        .build()
        .await
        .expect("cluster store");
    let keys: Vec<String> = (0..30).map(|i| format!("auth:{i}")).collect();
    let entries: Vec<(&str, Bytes)> =
        keys.iter().map(|k| (k.as_str(), Bytes::from(k.clone()))).collect();
    store.set_many(&entries, None).await.expect("set_many with the password");
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let got = store.get_many(&refs).await.expect("get_many");
    assert!(got.iter().zip(&keys).all(|(v, k)| v.as_deref() == Some(k.as_bytes())));
    assert_eq!(store.len().await.expect("len"), 30);
    assert_eq!(store.delete_prefix("auth:").await.expect("delete_prefix"), 30);
    tokio::task::spawn_blocking(move || drop(cluster)).await.expect("join");
}
