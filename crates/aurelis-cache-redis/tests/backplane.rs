//! The stream backplane against real servers: delivery, isolation by namespace and version,
//! malformed entries, subscribing while Redis is down, replay after a partition (cut and
//! half-open), `Reconnected` after a trim or a restart without data, `Resumed` after a restart
//! with persistence, marks, and the cluster. Waits are bounded polls; "nothing else arrived"
//! is checked after a sentinel message that arrived, never after a fixed sleep.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aurelis_cache_core::{
    Backplane, BackplaneEvent, BackplaneHandler, ErrorKind, Invalidation, InvalidationMessage, Mark,
};
use aurelis_cache_redis::{RedisBackplane, RedisConfig};
use aurelis_redis_harness::{free_port, RedisCluster, RedisServer, Reply, TcpProxy};

const DEADLINE: Duration = Duration::from_secs(30);

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

    /// The keys of every `Invalidate` event, in order.
    fn keys(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                BackplaneEvent::Invalidate(m) => match m.invalidations.as_slice() {
                    [Invalidation::Key(k)] => Some(k.clone()),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    async fn wait_for(&self, what: &str, wanted: impl Fn(&BackplaneEvent) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !self.events().iter().any(&wanted) {
            assert!(
                Instant::now() < deadline,
                "no {what} within {DEADLINE:?}: {:?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_for_key(&self, key: &str) {
        let deadline = Instant::now() + DEADLINE;
        while !self.keys().iter().any(|k| k == key) {
            assert!(Instant::now() < deadline, "no {key} within {DEADLINE:?}: {:?}", self.events());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn config(url: String) -> RedisConfig {
    let mut config = RedisConfig::default();
    config.url = url;
    config.timeout_ms = 2_000;
    config.connect_timeout_ms = 1_000;
    config
}

fn message(origin: &str, key: &str) -> InvalidationMessage {
    InvalidationMessage::new(origin, Invalidation::Key(key.to_owned()))
}

fn is(event: BackplaneEvent) -> impl Fn(&BackplaneEvent) -> bool {
    move |e| *e == event
}

fn count(events: &[BackplaneEvent], event: &BackplaneEvent) -> usize {
    events.iter().filter(|e| *e == event).count()
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

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("join")
}

async fn start_server() -> RedisServer {
    blocking(RedisServer::start).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Subscribes and waits until the subscriber reads: a probe message published afterwards
/// arrives. Returns the recorder, cleared of the probe.
async fn subscribed(subscriber: &RedisBackplane, publisher: &RedisBackplane) -> Recorder {
    let seen = Recorder::default();
    subscriber.subscribe(seen.handler()).await.expect("subscribe never fails");
    // The subscriber starts at the stream's end once connected: probe until one arrives.
    let deadline = Instant::now() + DEADLINE;
    let mut n = 0;
    loop {
        let probe = format!("probe-{n}");
        publish_eventually(publisher, &message("probe", &probe)).await;
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until && !seen.keys().contains(&probe) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if seen.keys().contains(&probe) {
            break;
        }
        assert!(Instant::now() < deadline, "the subscriber never started reading");
        n += 1;
    }
    seen.0.lock().expect("lock").clear();
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_is_scoped_by_namespace_and_version_and_includes_own_messages() {
    let server = start_server().await;
    let a = RedisBackplane::new(&config(server.url()), "bp", "v1").expect("a");
    let b = RedisBackplane::new(&config(server.url()), "bp", "v1").expect("b");
    let other_ns = RedisBackplane::new(&config(server.url()), "elsewhere", "v1").expect("ns");
    let other_version = RedisBackplane::new(&config(server.url()), "bp", "v2").expect("ver");
    let seen_a = subscribed(&a, &a).await;
    let seen_b = subscribed(&b, &a).await;
    let seen_ns = subscribed(&other_ns, &other_ns).await;
    let seen_version = subscribed(&other_version, &other_version).await;

    let msg = InvalidationMessage::batch(
        "instance-a",
        vec![Invalidation::Key("aurelis:v1:user:1".into()), Invalidation::Clear],
    );
    a.publish(&msg).await.expect("publish");
    seen_b.wait_for("the batch", is(BackplaneEvent::Invalidate(msg.clone()))).await;
    // The publisher's own subscription gets it too (the cache filters by origin).
    seen_a.wait_for("its own message", is(BackplaneEvent::Invalidate(msg.clone()))).await;

    // The other scopes' own sentinels arrive, and nothing before them.
    other_ns.publish(&message("x", "sentinel-ns")).await.expect("publish");
    other_version.publish(&message("x", "sentinel-version")).await.expect("publish");
    seen_ns.wait_for_key("sentinel-ns").await;
    seen_version.wait_for_key("sentinel-version").await;
    assert_eq!(seen_ns.keys(), vec!["sentinel-ns"], "{:?}", seen_ns.events());
    assert_eq!(seen_version.keys(), vec!["sentinel-version"], "{:?}", seen_version.events());
    assert_eq!(seen_b.events(), vec![BackplaneEvent::Invalidate(msg)], "exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_entries_are_skipped() {
    let server = Arc::new(start_server().await);
    let backplane = RedisBackplane::new(&config(server.url()), "bp-bad", "v1").expect("bp");
    let seen = subscribed(&backplane, &backplane).await;

    let stream = backplane.stream().to_owned();
    let raw = server.clone();
    blocking(move || {
        for fields in [
            vec![&b"m"[..], b"\xff\x00 not json"],
            vec![&b"m"[..], br#"{"origin":1}"#],
            vec![&b"other"[..], b"field"],
        ] {
            let mut args = vec![&b"XADD"[..], stream.as_bytes(), b"*"];
            args.extend(fields);
            let reply = raw.command(&args).expect("xadd");
            assert!(!matches!(reply, Reply::Error(_)), "{reply:?}");
        }
    })
    .await;

    let good = message("instance-x", "k");
    backplane.publish(&good).await.expect("publish");
    seen.wait_for("the valid message", is(BackplaneEvent::Invalidate(good.clone()))).await;
    assert_eq!(seen.events(), vec![BackplaneEvent::Invalidate(good)], "only the valid message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_while_redis_is_down_returns_ok_and_delivers_once_it_starts() {
    let port = free_port().expect("port");
    let url = format!("redis://127.0.0.1:{port}/");
    let subscriber = RedisBackplane::new(&config(url.clone()), "bp-late", "v1").expect("builds");
    let seen = Recorder::default();
    let subscribe =
        tokio::time::timeout(Duration::from_secs(5), subscriber.subscribe(seen.handler()))
            .await
            .expect("subscribe must return at once");
    subscribe.expect("subscribe must not fail while Redis is down");
    seen.wait_for("Disconnected", is(BackplaneEvent::Disconnected)).await;

    // Publishing fails while down, in bounded time.
    let publisher = RedisBackplane::new(&config(url), "bp-late", "v1").expect("publisher");
    let down = tokio::time::timeout(Duration::from_secs(10), publisher.publish(&message("p", "x")))
        .await
        .expect("publish must not hang");
    let err = down.expect_err("publish succeeded with Redis down");
    assert!(err.is_transport(), "{err}");

    let server = blocking(move || RedisServer::builder().port(port).start())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Missed messages cannot be ruled out: the first connection reports Reconnected.
    seen.wait_for("Reconnected", is(BackplaneEvent::Reconnected)).await;
    let msg = message("p", "after-start");
    publish_eventually(&publisher, &msg).await;
    seen.wait_for_key("after-start").await;
    let events = seen.events();
    assert_eq!(
        events,
        vec![
            BackplaneEvent::Disconnected,
            BackplaneEvent::Reconnected,
            BackplaneEvent::Invalidate(msg)
        ],
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_connection_reports_nothing_when_redis_was_up() {
    let server = start_server().await;
    let a = RedisBackplane::new(&config(server.url()), "bp-up", "v1").expect("a");
    let seen = Recorder::default();
    a.subscribe(seen.handler()).await.expect("subscribe");
    // Wait until it reads (a probe arrives), then nothing but probes may have come.
    let deadline = Instant::now() + DEADLINE;
    let mut n = 0;
    while seen.keys().is_empty() {
        assert!(Instant::now() < deadline, "never read: {:?}", seen.events());
        a.publish(&message("p", &format!("probe-{n}"))).await.expect("publish");
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        seen.events().iter().all(|e| matches!(e, BackplaneEvent::Invalidate(_))),
        "{:?}",
        seen.events()
    );
}

/// The subscriber goes through a proxy; the publisher talks to Redis directly.
struct Partitioned {
    server: Arc<RedisServer>,
    proxy: TcpProxy,
    publisher: RedisBackplane,
    subscriber: RedisBackplane,
    seen: Recorder,
}

async fn partitioned(server: RedisServer, namespace: &str, max_len: usize) -> Partitioned {
    let server = Arc::new(server);
    let proxy = TcpProxy::start(server.port()).expect("proxy");
    let mut direct = config(server.url());
    direct.backplane_max_len = max_len;
    let mut via_proxy = config(proxy.url());
    via_proxy.backplane_max_len = max_len;
    via_proxy.timeout_ms = 500;
    via_proxy.connect_timeout_ms = 500;
    let publisher = RedisBackplane::new(&direct, namespace, "v1").expect("publisher");
    let subscriber = RedisBackplane::new(&via_proxy, namespace, "v1").expect("subscriber");
    let seen = subscribed(&subscriber, &publisher).await;
    Partitioned { server, proxy, publisher, subscriber, seen }
}

impl Partitioned {
    async fn publish_keys(&self, prefix: &str, n: usize) -> Vec<String> {
        let mut keys = Vec::new();
        for i in 0..n {
            let key = format!("{prefix}-{i}");
            self.publisher.publish(&message("p", &key)).await.expect("publish");
            keys.push(key);
        }
        keys
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_subscriber_resumes_and_replays_every_message_in_order() {
    let p = partitioned(start_server().await, "bp-cut", 100_000).await;
    let before = p.publish_keys("before", 3).await;
    p.seen.wait_for_key("before-2").await;

    p.proxy.cut();
    p.seen.wait_for("Disconnected", is(BackplaneEvent::Disconnected)).await;
    let during = p.publish_keys("during", 50).await;
    p.proxy.heal();
    p.seen.wait_for("Resumed", is(BackplaneEvent::Resumed)).await;
    let after = p.publish_keys("after", 3).await;
    p.seen.wait_for_key("after-2").await;

    let expected: Vec<String> = before.into_iter().chain(during).chain(after).collect();
    assert_eq!(p.seen.keys(), expected, "every message once, in order");
    let events = p.seen.events();
    assert_eq!(count(&events, &BackplaneEvent::Reconnected), 0, "{events:?}");
    assert_eq!(count(&events, &BackplaneEvent::Disconnected), 1, "{events:?}");
    assert_eq!(count(&events, &BackplaneEvent::Resumed), 1, "{events:?}");
    let resumed = events.iter().position(|e| *e == BackplaneEvent::Resumed).expect("resumed");
    let first_during = events
        .iter()
        .position(|e| matches!(e, BackplaneEvent::Invalidate(m) if m.invalidations == [Invalidation::Key("during-0".into())]))
        .expect("during-0");
    assert!(resumed < first_during, "Resumed comes before the replay: {events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_longer_than_one_read_batch_arrives_whole() {
    let p = partitioned(start_server().await, "bp-long", 100_000).await;
    p.proxy.cut();
    p.seen.wait_for("Disconnected", is(BackplaneEvent::Disconnected)).await;
    // More than one XREAD batch (512 entries) behind.
    let during = p.publish_keys("during", 1_300).await;
    p.proxy.heal();
    p.seen.wait_for_key("during-1299").await;
    assert_eq!(p.seen.keys(), during, "every message once, in order");
    let events = p.seen.events();
    assert_eq!(count(&events, &BackplaneEvent::Resumed), 1, "{:?}", &events[..3]);
    assert_eq!(count(&events, &BackplaneEvent::Reconnected), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_connection_is_noticed_and_the_gap_replayed() {
    let p = partitioned(start_server().await, "bp-silent", 100_000).await;
    // Nothing is forwarded and nothing is closed: only the XREAD deadline can notice.
    p.proxy.blackhole();
    p.seen.wait_for("Disconnected", is(BackplaneEvent::Disconnected)).await;
    let during = p.publish_keys("during", 10).await;
    p.proxy.heal();
    p.seen.wait_for("Resumed", is(BackplaneEvent::Resumed)).await;
    p.seen.wait_for_key("during-9").await;
    assert_eq!(p.seen.keys(), during);
    assert_eq!(count(&p.seen.events(), &BackplaneEvent::Reconnected), 0, "{:?}", p.seen.events());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_trimmed_past_the_last_id_gives_reconnected() {
    // Small stream nodes, so `MAXLEN ~ 5` really trims.
    let server = blocking(|| RedisServer::builder().option("stream-node-max-entries", "2").start())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let p = partitioned(server, "bp-trim", 5).await;
    p.proxy.cut();
    p.seen.wait_for("Disconnected", is(BackplaneEvent::Disconnected)).await;
    p.publish_keys("during", 40).await;
    let stream = p.subscriber.stream().to_owned();
    let server = p.server.clone();
    let len = blocking(move || server.command(&["XLEN", &stream]).expect("xlen").as_int())
        .await
        .expect("int");
    assert!(len < 20, "the stream was not trimmed: {len} entries");
    p.proxy.heal();
    p.seen.wait_for("Reconnected", is(BackplaneEvent::Reconnected)).await;
    p.publisher.publish(&message("p", "after")).await.expect("publish");
    p.seen.wait_for_key("after").await;
    let events = p.seen.events();
    assert_eq!(count(&events, &BackplaneEvent::Resumed), 0, "{events:?}");
    // It goes on from the stream's end: no stale replay after Reconnected.
    assert_eq!(p.seen.keys(), vec!["after"], "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_without_data_gives_reconnected_and_with_data_resumed() {
    // Without persistence the stream is gone after a restart: a gap is possible.
    let mut server = start_server().await;
    let publisher = RedisBackplane::new(&config(server.url()), "bp-restart", "v1").expect("p");
    let subscriber = RedisBackplane::new(&config(server.url()), "bp-restart", "v1").expect("s");
    let seen = subscribed(&subscriber, &publisher).await;
    server.stop();
    seen.wait_for("Disconnected", is(BackplaneEvent::Disconnected)).await;
    let server =
        blocking(move || server.restart().map(|()| server)).await.unwrap_or_else(|e| panic!("{e}"));
    seen.wait_for("Reconnected", is(BackplaneEvent::Reconnected)).await;
    publish_eventually(&publisher, &message("p", "after")).await;
    seen.wait_for_key("after").await;
    assert_eq!(count(&seen.events(), &BackplaneEvent::Resumed), 0, "{:?}", seen.events());
    drop(server);

    // With an append-only file synced on every write, the stream survives: nothing missed.
    let mut server = blocking(|| {
        RedisServer::builder().option("appendonly", "yes").option("appendfsync", "always").start()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let publisher = RedisBackplane::new(&config(server.url()), "bp-restart", "v1").expect("p");
    let subscriber = RedisBackplane::new(&config(server.url()), "bp-restart", "v1").expect("s");
    let seen = subscribed(&subscriber, &publisher).await;
    publisher.publish(&message("p", "before")).await.expect("publish");
    seen.wait_for_key("before").await;
    server.stop();
    seen.wait_for("Disconnected", is(BackplaneEvent::Disconnected)).await;
    let server =
        blocking(move || server.restart().map(|()| server)).await.unwrap_or_else(|e| panic!("{e}"));
    seen.wait_for("Resumed", is(BackplaneEvent::Resumed)).await;
    publish_eventually(&publisher, &message("p", "after")).await;
    seen.wait_for_key("after").await;
    assert_eq!(seen.keys(), vec!["before", "after"]);
    assert_eq!(count(&seen.events(), &BackplaneEvent::Reconnected), 0, "{:?}", seen.events());
    drop(server);
}

/// Clients of `server` blocked in `XREAD`.
fn xread_clients(server: &RedisServer) -> usize {
    let list = server.command(&["CLIENT", "LIST"]).expect("client list");
    let text = list.as_str().map(str::to_owned).unwrap_or_else(|| {
        String::from_utf8_lossy(list.as_bytes().expect("client list text")).into_owned()
    });
    text.lines().filter(|line| line.contains("cmd=xread")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_backplane_stops_its_subscriber() {
    let server = Arc::new(start_server().await);
    let publisher = RedisBackplane::new(&config(server.url()), "bp-drop", "v1").expect("p");
    let subscriber = RedisBackplane::new(&config(server.url()), "bp-drop", "v1").expect("s");
    let sentinel = RedisBackplane::new(&config(server.url()), "bp-drop", "v1").expect("sentinel");
    let seen_sentinel = subscribed(&sentinel, &publisher).await;
    let seen = subscribed(&subscriber, &publisher).await;
    let s = server.clone();
    assert_eq!(blocking(move || xread_clients(&s)).await, 2);
    drop(subscriber);
    // Once the task is gone the server has one reader left.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let s = server.clone();
        if blocking(move || xread_clients(&s)).await == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the dropped subscriber kept reading");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    publisher.publish(&message("p", "k")).await.expect("publish");
    seen_sentinel.wait_for_key("k").await;
    assert!(seen.events().is_empty(), "{:?}", seen.events());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marks_round_trip_keep_the_max_and_prune() {
    let server = Arc::new(start_server().await);
    let backplane = RedisBackplane::new(&config(server.url()), "bp-marks", "v1").expect("bp");
    marks_behave(&backplane, &server).await;
}

async fn marks_behave(backplane: &RedisBackplane, server: &Arc<RedisServer>) {
    assert!(backplane.load_marks().await.expect("load").is_empty());
    let tag = Invalidation::Tag("user:1".into());
    let category = Invalidation::Prefix("aurelis:v1:models:".into());
    backplane
        .store_marks(&[Mark::new(tag.clone(), 1_000), Mark::new(category.clone(), 2_000)])
        .await
        .expect("store");
    // An older mark never lowers a newer one; a newer one replaces it.
    backplane.store_marks(&[Mark::new(tag.clone(), 500)]).await.expect("store older");
    backplane.store_marks(&[Mark::new(category.clone(), 3_000)]).await.expect("store newer");
    backplane.store_marks(&[]).await.expect("store nothing");

    // A field another writer damaged is skipped on load.
    let key = backplane.marks_key().to_owned();
    let s = server.clone();
    blocking(move || s.command(&["HSET", &key, "not json", "5"]).expect("hset")).await;

    let mut marks = backplane.load_marks().await.expect("load");
    marks.sort_by_key(|m| m.at_ms);
    assert_eq!(marks, vec![Mark::new(tag.clone(), 1_000), Mark::new(category.clone(), 3_000)]);

    backplane.prune_marks(2_000).await.expect("prune");
    assert_eq!(backplane.load_marks().await.expect("load"), vec![Mark::new(category, 3_000)]);
    backplane.prune_marks(u64::MAX / 2).await.expect("prune all");
    assert!(backplane.load_marks().await.expect("load").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marks_fail_as_transport_errors_while_redis_is_down() {
    let mut server = start_server().await;
    let url = server.url();
    server.stop();
    let backplane = RedisBackplane::new(&config(url), "bp-marks-down", "v1").expect("bp");
    let mark = Mark::new(Invalidation::Clear, 1);
    let err = backplane.store_marks(&[mark]).await.expect_err("down");
    assert!(matches!(err.kind(), ErrorKind::Backend | ErrorKind::Timeout), "{err}");
    let err = backplane.load_marks().await.expect_err("down");
    assert!(err.is_transport(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_backplane_delivers_replays_and_keeps_marks() {
    let cluster = blocking(RedisCluster::start).await.unwrap_or_else(|e| panic!("{e}"));
    let cluster = Arc::new(cluster);
    let mut config = RedisConfig::default();
    config.cluster_urls = cluster.urls();
    config.timeout_ms = 2_000;
    let publisher = RedisBackplane::new(&config, "bp-cluster", "v1").expect("publisher");
    let subscriber = RedisBackplane::new(&config, "bp-cluster", "v1").expect("subscriber");
    let seen = subscribed(&subscriber, &publisher).await;

    for i in 0..5 {
        publisher.publish(&message("p", &format!("first-{i}"))).await.expect("publish");
    }
    seen.wait_for_key("first-4").await;

    // Every client connection on every node is killed; the reader reconnects (itself or
    // through the cluster connection) and nothing is lost or repeated.
    let c = cluster.clone();
    blocking(move || {
        for node in c.nodes() {
            node.command(&["CLIENT", "KILL", "TYPE", "normal"]).expect("client kill");
        }
    })
    .await;
    for i in 0..5 {
        publish_eventually(&publisher, &message("p", &format!("after-{i}"))).await;
    }
    seen.wait_for_key("after-4").await;
    let expected: Vec<String> =
        (0..5).map(|i| format!("first-{i}")).chain((0..5).map(|i| format!("after-{i}"))).collect();
    assert_eq!(seen.keys(), expected);
    assert_eq!(count(&seen.events(), &BackplaneEvent::Reconnected), 0, "{:?}", seen.events());

    // Marks on a cluster: one key, on the master of its slot.
    let tag = Invalidation::Tag("t".into());
    publisher.store_marks(&[Mark::new(tag.clone(), 7)]).await.expect("store on cluster");
    publisher.store_marks(&[Mark::new(tag.clone(), 3)]).await.expect("store older");
    assert_eq!(subscriber.load_marks().await.expect("load"), vec![Mark::new(tag, 7)]);
    subscriber.prune_marks(10).await.expect("prune");
    assert!(publisher.load_marks().await.expect("load").is_empty());
    drop((publisher, subscriber));
    blocking(move || drop(cluster)).await;
}
