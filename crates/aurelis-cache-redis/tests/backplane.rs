//! The pub/sub backplane against real servers: delivery between two backplanes, skipping
//! malformed messages, and Disconnected/Reconnected around a server restart (standalone and
//! cluster). Waits are bounded polls; nothing asserts how fast a message arrives.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aurelis_cache_core::{
    Backplane, BackplaneEvent, BackplaneHandler, Invalidation, InvalidationMessage,
};
use aurelis_cache_redis::{RedisBackplane, RedisConfig};
use aurelis_redis_harness::{RedisCluster, RedisServer};

const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<BackplaneEvent>>>);

impl Recorder {
    fn handler(&self) -> BackplaneHandler {
        let events = self.0.clone();
        Arc::new(move |event| events.lock().expect("lock").push(event))
    }

    fn events(&self) -> Vec<BackplaneEvent> {
        self.0.lock().expect("lock").clone()
    }

    async fn wait_for(&self, what: &str, wanted: impl Fn(&BackplaneEvent) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !self.events().iter().any(&wanted) {
            assert!(
                Instant::now() < deadline,
                "no {what} within {DEADLINE:?}: {:?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn config(url: String) -> RedisConfig {
    let mut config = RedisConfig::default();
    config.url = url;
    config.timeout_ms = 2_000;
    config
}

fn message(origin: &str, key: &str) -> InvalidationMessage {
    InvalidationMessage::new(origin, Invalidation::Key(key.to_owned()))
}

/// Publishes until a publish succeeds (the publisher's connection may still be the one that
/// broke), within the deadline.
async fn publish_eventually(backplane: &RedisBackplane, msg: &InvalidationMessage) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match backplane.publish(msg).await {
            Ok(()) => return,
            Err(e) => {
                assert!(Instant::now() < deadline, "publish kept failing: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn start_server() -> RedisServer {
    tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_by_one_reaches_the_other() {
    let server = start_server().await;
    let a = RedisBackplane::new(&config(server.url()), "bp-test").expect("a");
    let b = RedisBackplane::new(&config(server.url()), "bp-test").expect("b");
    let other_namespace = RedisBackplane::new(&config(server.url()), "elsewhere").expect("c");
    let seen_b = Recorder::default();
    let seen_other = Recorder::default();
    b.subscribe(seen_b.handler()).await.expect("subscribe b");
    other_namespace.subscribe(seen_other.handler()).await.expect("subscribe c");

    let msg = message("instance-a", "aurelis:v1:user:1");
    a.publish(&msg).await.expect("publish");
    seen_b.wait_for("message", |e| *e == BackplaneEvent::Invalidate(msg.clone())).await;

    let clear = InvalidationMessage::new("instance-a", Invalidation::Clear);
    a.publish(&clear).await.expect("publish clear");
    seen_b.wait_for("clear", |e| *e == BackplaneEvent::Invalidate(clear.clone())).await;
    assert!(seen_other.events().is_empty(), "another namespace got {:?}", seen_other.events());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_skipped() {
    let server = start_server().await;
    let backplane = RedisBackplane::new(&config(server.url()), "bp-bad").expect("backplane");
    let seen = Recorder::default();
    backplane.subscribe(seen.handler()).await.expect("subscribe");

    let channel = backplane.channel().to_owned();
    let raw = tokio::task::spawn_blocking(move || {
        server.command(&[&b"PUBLISH"[..], channel.as_bytes(), b"\xff\x00 not json"])?;
        server.command(&[&b"PUBLISH"[..], channel.as_bytes(), br#"{"origin":1}"#])?;
        Ok::<_, aurelis_redis_harness::HarnessError>(server)
    });
    let server = raw.await.expect("join").expect("raw publish");

    let good = message("instance-x", "k");
    backplane.publish(&good).await.expect("publish");
    seen.wait_for("the valid message", |e| *e == BackplaneEvent::Invalidate(good.clone())).await;
    assert_eq!(seen.events(), vec![BackplaneEvent::Invalidate(good)], "only the valid message");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reports_disconnected_then_reconnected_and_messages_flow_again() {
    let mut server = start_server().await;
    let publisher = RedisBackplane::new(&config(server.url()), "bp-restart").expect("publisher");
    let subscriber = RedisBackplane::new(&config(server.url()), "bp-restart").expect("subscriber");
    let seen = Recorder::default();
    subscriber.subscribe(seen.handler()).await.expect("subscribe");
    let before = message("p", "before");
    publisher.publish(&before).await.expect("publish");
    seen.wait_for("the first message", |e| *e == BackplaneEvent::Invalidate(before.clone())).await;

    server.stop();
    seen.wait_for("Disconnected", |e| *e == BackplaneEvent::Disconnected).await;
    // While the server is down a publish fails, it does not hang.
    let down = tokio::time::timeout(Duration::from_secs(10), publisher.publish(&message("p", "x")))
        .await
        .expect("publish must not hang while the server is down");
    assert!(down.is_err(), "publish succeeded with the server down");

    let server = tokio::task::spawn_blocking(move || server.restart().map(|()| server))
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("{e}"));
    seen.wait_for("Reconnected", |e| *e == BackplaneEvent::Reconnected).await;

    let after = message("p", "after");
    publish_eventually(&publisher, &after).await;
    seen.wait_for("a message after the restart", |e| {
        *e == BackplaneEvent::Invalidate(after.clone())
    })
    .await;

    let events = seen.events();
    let disconnected = events.iter().filter(|e| **e == BackplaneEvent::Disconnected).count();
    let reconnected = events.iter().filter(|e| **e == BackplaneEvent::Reconnected).count();
    assert_eq!((disconnected, reconnected), (1, 1), "{events:?}");
    let d = events.iter().position(|e| *e == BackplaneEvent::Disconnected).expect("d");
    let r = events.iter().position(|e| *e == BackplaneEvent::Reconnected).expect("r");
    assert!(d < r, "Disconnected must come before Reconnected: {events:?}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_backplane_stops_its_subscriber() {
    let server = start_server().await;
    let publisher = RedisBackplane::new(&config(server.url()), "bp-drop").expect("publisher");
    let subscriber = RedisBackplane::new(&config(server.url()), "bp-drop").expect("subscriber");
    let seen = Recorder::default();
    subscriber.subscribe(seen.handler()).await.expect("subscribe");
    drop(subscriber);
    let channel = publisher.channel().to_owned();
    // Once the task is gone the server counts no subscriber on the channel.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let numsub = server.command(&["PUBSUB", "NUMSUB", &channel]).expect("numsub");
        let count = match numsub {
            aurelis_redis_harness::Reply::Array(Some(items)) => items[1].as_int().unwrap_or(-1),
            other => panic!("unexpected reply {other:?}"),
        };
        if count == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the subscriber kept its subscription");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    publisher.publish(&message("p", "k")).await.expect("publish");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(seen.events().is_empty(), "{:?}", seen.events());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_fails_when_redis_is_down() {
    let mut server = start_server().await;
    let url = server.url();
    server.stop();
    let backplane = RedisBackplane::new(&config(url), "bp-down").expect("builds while down");
    let err = backplane.subscribe(Recorder::default().handler()).await.expect_err("down");
    assert_eq!(err.kind(), aurelis_cache_core::ErrorKind::Backend, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_backplane_delivers_and_moves_to_another_node() {
    let mut cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut config = RedisConfig::default();
    config.cluster_urls = cluster.urls();
    config.timeout_ms = 2_000;
    let publisher = RedisBackplane::new(&config, "bp-cluster").expect("publisher");
    let subscriber = RedisBackplane::new(&config, "bp-cluster").expect("subscriber");
    let seen = Recorder::default();
    subscriber.subscribe(seen.handler()).await.expect("subscribe");

    let first = message("p", "first");
    publisher.publish(&first).await.expect("publish");
    seen.wait_for("a message through the cluster", |e| {
        *e == BackplaneEvent::Invalidate(first.clone())
    })
    .await;

    // The subscriber starts on the first seed node; stop it and it moves on.
    cluster.nodes_mut()[0].stop();
    seen.wait_for("Disconnected", |e| *e == BackplaneEvent::Disconnected).await;
    seen.wait_for("Reconnected", |e| *e == BackplaneEvent::Reconnected).await;

    // Publish straight to a live node: PUBLISH reaches every node over the cluster bus.
    let after = message("p", "after");
    let payload = after.to_bytes().expect("encode");
    let channel = subscriber.channel().to_owned();
    cluster.nodes()[1]
        .command(&[&b"PUBLISH"[..], channel.as_bytes(), &payload])
        .expect("publish on node 1");
    seen.wait_for("a message after moving", |e| *e == BackplaneEvent::Invalidate(after.clone()))
        .await;
    drop(subscriber);
    tokio::task::spawn_blocking(move || drop(cluster)).await.expect("join");
}
