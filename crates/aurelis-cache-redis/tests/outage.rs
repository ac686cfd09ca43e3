//! Outage behaviour against a real server that is killed, restarted on the same port, or
//! paused: operations fail with `Backend` or `Timeout` instead of hanging, and the same store
//! works again once Redis is back, without being rebuilt. The bounds below only guard against
//! hangs (several times the configured limit); they do not measure speed.

use std::time::{Duration, Instant};

use aurelis_cache_core::{ErrorKind, Store};
use aurelis_cache_redis::RedisStore;
use aurelis_redis_harness::RedisServer;
use bytes::Bytes;

const TIMEOUT_MS: u64 = 300;
/// A generous bound for "did not hang": far above the per-operation limit.
const HANG: Duration = Duration::from_secs(10);

async fn start_server() -> RedisServer {
    tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn restart(mut server: RedisServer) -> RedisServer {
    tokio::task::spawn_blocking(move || server.restart().map(|()| server))
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn store_for(server: &RedisServer) -> RedisStore {
    RedisStore::builder()
        .url(server.url())
        .timeout_ms(TIMEOUT_MS)
        .connect_timeout_ms(TIMEOUT_MS)
        .pool_size(4)
        .build()
        .await
        .expect("store")
}

/// Runs every kind of operation once; each must fail with Backend or Timeout, in bounded time.
async fn every_operation_fails(store: &RedisStore) {
    macro_rules! fails {
        ($name:literal, $op:expr) => {{
            let result = tokio::time::timeout(HANG, $op)
                .await
                .unwrap_or_else(|_| panic!("{} hung with the server down", $name));
            let err =
                result.err().unwrap_or_else(|| panic!("{} succeeded with the server down", $name));
            assert!(
                matches!(err.kind(), ErrorKind::Backend | ErrorKind::Timeout),
                "{}: unexpected error kind {err}",
                $name
            );
            assert_eq!(err.tier(), Some("redis"), "{}: {err}", $name);
        }};
    }
    fails!("get", store.get("k"));
    fails!("set", store.set("k", Bytes::from_static(b"v"), None));
    fails!("set_if_absent", store.set_if_absent("k", Bytes::from_static(b"v"), None));
    fails!("scan_prefix", store.scan_prefix("p:", None, 10));
    fails!("delete", store.delete("k"));
    fails!("get_many", store.get_many(&["a", "b"]));
    fails!("set_many", store.set_many(&[("a", Bytes::from_static(b"1"))], None));
    fails!("delete_prefix", store.delete_prefix("p:"));
    fails!("delete_pattern", store.delete_pattern("p:*"));
    fails!("clear", store.clear());
    fails!("len", store.len());
    fails!("size_bytes", store.size_bytes());
    fails!("ping", store.ping());
}

/// Polls until `get` answers again, then checks a write and a read.
async fn works_again(store: &RedisStore) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match store.get("probe").await {
            Ok(_) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "the store did not recover: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    store.set("after", Bytes::from_static(b"ok"), None).await.expect("set after recovery");
    assert_eq!(store.get("after").await.expect("get"), Some(Bytes::from_static(b"ok")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_fails_fast_and_the_same_store_recovers() {
    let mut server = start_server().await;
    let store = store_for(&server).await;
    store.set("k", Bytes::from_static(b"v"), None).await.expect("set");
    // Several connections in use, so more than one has to be replaced.
    let reads = (0..32).map(|_| store.get("k"));
    for got in futures::future::join_all(reads).await {
        assert_eq!(got.expect("get"), Some(Bytes::from_static(b"v")));
    }

    server.stop();
    every_operation_fails(&store).await;
    // Still failing, still bounded, on a second round (connections are being re-dialled).
    every_operation_fails(&store).await;

    let server = restart(server).await;
    works_again(&store).await;
    // No persistence: the restarted server is empty.
    assert_eq!(store.get("k").await.expect("get"), None);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_builds_while_redis_is_down() {
    let mut server = start_server().await;
    server.stop();
    let store = store_for(&server).await;
    every_operation_fails(&store).await;
    let server = restart(server).await;
    works_again(&store).await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresponsive_server_is_a_timeout() {
    let server = start_server().await;
    let store = store_for(&server).await;
    store.set("k", Bytes::from_static(b"v"), None).await.expect("set");
    // CLIENT PAUSE holds every client's commands on the server side: the connection stays
    // open but nothing is answered, like a hung or overloaded server.
    server.command(&["CLIENT", "PAUSE", "1500", "ALL"]).expect("pause");
    let started = Instant::now();
    let err = tokio::time::timeout(HANG, store.get("k"))
        .await
        .expect("get hung on a paused server")
        .expect_err("a paused server cannot answer within the limit");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert_eq!(err.tier(), Some("redis"));
    assert!(started.elapsed() < HANG);
    works_again(&store).await;
    assert_eq!(store.get("k").await.expect("get"), Some(Bytes::from_static(b"v")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_a_backend_error_not_a_hang() {
    let server =
        tokio::task::spawn_blocking(|| RedisServer::builder().requirepass("right").start())
            .await
            .expect("join")
            .unwrap_or_else(|e| panic!("{e}"));
    let wrong = RedisStore::builder()
        .url(server.url_without_password())
        .password("not-the-password-42")
        .timeout_ms(TIMEOUT_MS)
        .build()
        .await
        .expect("builds");
    let err = tokio::time::timeout(HANG, wrong.get("k")).await.expect("hung").expect_err("auth");
    assert!(matches!(err.kind(), ErrorKind::Backend | ErrorKind::Timeout), "{err}");
    let shown = format!("{err} {err:?} {wrong:?} {:?}", wrong.config());
    assert!(!shown.contains("not-the-password-42"), "password leaked: {shown}");

    // The config's password overrides the URL's.
    let right = RedisStore::builder()
        .url(server.url_without_password())
        .password("right")
        .build()
        .await
        .expect("builds");
    right.set("k", Bytes::from_static(b"v"), None).await.expect("set with the right password");
    assert_eq!(right.get("k").await.expect("get"), Some(Bytes::from_static(b"v")));
}
