//! How server refusals and slow replies are classified, against real servers: a key of the
//! wrong type, an out-of-memory server and a read-only replica are `Rejected` (the tier is up,
//! so no breaker may count them); a reply slower than the store's limit is `Timeout` and does
//! not cost the shared connection; `len`/`size_bytes` with a key prefix count only its keys.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aurelis_cache_core::{ErrorKind, Store};
use aurelis_cache_redis::RedisStore;
use aurelis_redis_harness::{RedisServer, Reply};
use bytes::Bytes;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("join")
}

async fn server_with(options: &'static [(&'static str, &'static str)]) -> Arc<RedisServer> {
    blocking(move || {
        let mut builder = RedisServer::builder();
        for (name, value) in options {
            builder = builder.option(*name, *value);
        }
        builder.start()
    })
    .await
    .map(Arc::new)
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn command(server: &Arc<RedisServer>, args: &[&str]) -> Reply {
    let server = server.clone();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    blocking(move || server.command(&args).expect("command")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_the_wrong_type_is_rejected_for_that_key_only() {
    let server = server_with(&[]).await;
    let store = RedisStore::builder()
        .url(server.url())
        .key_prefix("app:")
        .timeout_ms(5_000)
        .build()
        .await
        .expect("store");
    // Another application's list under one of the store's keys.
    command(&server, &["RPUSH", "app:list", "x"]).await;
    store.set("fine", Bytes::from_static(b"v"), None).await.expect("set");

    let err = store.get("list").await.expect_err("a list is not a cache entry");
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert!(!err.is_transport(), "a wrong-type key must not count towards the breaker");
    assert_eq!(err.tier(), Some("redis"));
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");

    // The other keys are served as usual; MGET reads a wrong-type key as missing.
    assert_eq!(store.get("fine").await.expect("get"), Some(Bytes::from_static(b"v")));
    assert_eq!(
        store.get_many(&["list", "fine"]).await.expect("get_many"),
        vec![None, Some(Bytes::from_static(b"v"))]
    );
    // A guarded write leaves it alone; a plain write replaces it.
    assert!(!store.set_if_absent("list", Bytes::from_static(b"w"), None).await.expect("nx"));
    store.set("list", Bytes::from_static(b"w"), None).await.expect("set replaces any type");
    assert_eq!(store.get("list").await.expect("get"), Some(Bytes::from_static(b"w")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_and_read_only_are_rejected() {
    let server = server_with(&[("maxmemory", "3mb"), ("maxmemory-policy", "noeviction")]).await;
    let store =
        RedisStore::builder().url(server.url()).timeout_ms(5_000).build().await.expect("store");
    let big = Bytes::from(vec![7u8; 4 << 20]);
    // The first big write may pass (the check runs before a command); the next cannot.
    let _ = store.set("big-1", big.clone(), None).await;
    let err = store.set("big-2", big, None).await.expect_err("over maxmemory");
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert!(!err.is_transport());
    assert!(err.to_string().contains("OOM"), "{err}");
    // Reads still work: the tier is up.
    assert!(store.get("nothing").await.expect("get").is_none());

    let primary = server_with(&[]).await;
    let replica = server_with(&[]).await;
    let port = primary.port().to_string();
    command(&replica, &["REPLICAOF", "127.0.0.1", &port]).await;
    let on_replica =
        RedisStore::builder().url(replica.url()).timeout_ms(5_000).build().await.expect("store");
    let err = on_replica.set("k", Bytes::from_static(b"v"), None).await.expect_err("read-only");
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert!(err.to_string().contains("read only"), "{err}");
}

/// Ids of the clients connected to `server`, except the one asking.
async fn client_ids(server: &Arc<RedisServer>) -> Vec<String> {
    let reply = command(server, &["CLIENT", "LIST"]).await;
    let text = match &reply {
        Reply::Bulk(Some(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        other => other.as_str().expect("client list").to_owned(),
    };
    let mut ids: Vec<String> = text
        .lines()
        .filter(|line| !line.contains("cmd=client|list"))
        .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")).map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reply_is_a_timeout_and_keeps_the_shared_connection() {
    let server = server_with(&[]).await;
    let store = RedisStore::builder()
        .url(server.url())
        .pool_size(1)
        .timeout_ms(200)
        // The probe after a time-out may wait connect + operation limits: longer than the pause.
        .connect_timeout_ms(3_000)
        .build()
        .await
        .expect("store");
    store.set("k", Bytes::from_static(b"v"), None).await.expect("set");
    let before = client_ids(&server).await;
    assert_eq!(before.len(), 1, "one held connection: {before:?}");

    // The server holds every command for 1 s: the get's reply comes after the store's limit.
    command(&server, &["CLIENT", "PAUSE", "1000", "ALL"]).await;
    let err = store.get("k").await.expect_err("a paused server cannot answer in 200 ms");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.is_transport());

    // Once the pause ends, the same store answers, on the same connection.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match store.get("k").await {
            Ok(got) => {
                assert_eq!(got, Some(Bytes::from_static(b"v")));
                break;
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
                assert!(Instant::now() < deadline, "the store did not recover");
            }
        }
    }
    // Let a probe that may still run finish before looking.
    store.ping().await.expect("ping");
    let after = client_ids(&server).await;
    assert_eq!(after, before, "the time-out must not replace the shared connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn len_and_size_count_only_the_prefix() {
    let server = server_with(&[]).await;
    let store = RedisStore::builder()
        .url(server.url())
        .key_prefix("mine:")
        .scan_count(10)
        .timeout_ms(5_000)
        .build()
        .await
        .expect("store");
    for i in 0..300 {
        command(&server, &["SET", &format!("theirs:{i}"), "x"]).await;
    }
    let entries: Vec<(String, Bytes)> =
        (0..250).map(|i| (format!("k{i}"), Bytes::from(vec![1u8; 100]))).collect();
    let refs: Vec<(&str, Bytes)> = entries.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    store.set_many(&refs, None).await.expect("set_many");
    assert_eq!(store.len().await.expect("len"), 250);
    let size = store.size_bytes().await.expect("size");
    assert!(size >= 250 * 100, "size {size} is below the values' bytes");
    store.clear().await.expect("clear");
    assert_eq!(store.len().await.expect("len"), 0);
    assert_eq!(store.size_bytes().await.expect("size"), 0);
    assert_eq!(command(&server, &["DBSIZE"]).await.as_int(), Some(300), "others' keys stay");
}
