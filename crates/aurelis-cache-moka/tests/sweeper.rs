//! The sweep thread's lifetime: started by the first write with a TTL, gone once the last
//! clone of the store is dropped. Alone in its binary, so no other test's store starts one.

#![cfg(target_os = "linux")]

use std::time::Duration;

use aurelis_cache_core::{Bytes, Store};
use aurelis_cache_moka::MokaStore;

/// Threads of this process named like the sweep thread (Linux: `/proc/self/task/*/comm`,
/// which keeps 15 bytes of the name).
fn sweep_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == "aurelis-moka-sw")
        .count()
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_sweep_thread_starts_with_a_ttl_and_stops_with_the_store() {
    let store = MokaStore::builder().build().unwrap();
    store.set("forever", Bytes::from_static(b"v"), None).await.unwrap();
    assert_eq!(sweep_threads(), 0, "no TTL yet, no sweep thread");
    let clone = store.clone();
    store.set("brief", Bytes::from_static(b"v"), Some(Duration::from_secs(1))).await.unwrap();
    clone.set("brief2", Bytes::from_static(b"v"), Some(Duration::from_secs(1))).await.unwrap();
    // The thread names itself once it runs.
    eventually("the sweep thread to start", || sweep_threads() == 1).await;
    drop(store);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(sweep_threads(), 1, "a clone still holds the store");
    drop(clone);
    eventually("the sweep thread to stop", || sweep_threads() == 0).await;
}

async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "waited 10 s for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Never more than one: the store starts its thread once, whatever the clones.
    assert!(sweep_threads() <= 1, "{} sweep threads", sweep_threads());
}
