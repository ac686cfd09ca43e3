//! Cache-aside finished: soft and hard loader timeouts with background completion,
//! refresh-ahead, TTL jitter (`Cache::get_or_refresh`). Gates, not timings, decide outcomes.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::{ErrorKind, SetOptions};
use common::{eventually, tiers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_timeout_serves_the_stale_value_and_the_load_finishes_in_the_background() {
    let t = tiers();
    let cache = t.cache();
    let opts = SetOptions::new().ttl(Duration::from_millis(50)).stale_for(Duration::from_secs(600));
    cache.set_with(("model", "q"), &"old".to_string(), &opts).await.unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await; // expired, inside its stale window
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let soft = opts.clone().soft_timeout(Duration::from_millis(30));
    let g = gate.clone();
    let got: String = cache
        .get_or_refresh(("model", "q"), &soft, move || async move {
            let _open = g.acquire().await;
            Ok::<_, std::io::Error>("new".to_string())
        })
        .await
        .unwrap();
    assert_eq!(got, "old", "the stale value is served while the loader is held");
    assert_eq!(cache.stats().snapshot().stale_served, 1);
    gate.add_permits(1);
    assert!(
        eventually(Duration::from_secs(10), || async {
            cache.get::<String>(("model", "q")).await.unwrap().as_deref() == Some("new")
        })
        .await,
        "the background load never stored its value"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_timeout_without_anything_stale_is_a_timeout_error_and_the_load_still_lands() {
    let t = tiers();
    let cache = t.cache();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    let opts = SetOptions::new().hard_timeout(Duration::from_millis(30));
    let err = cache
        .get_or_refresh(("model", "slow"), &opts, move || async move {
            let _open = g.acquire().await;
            Ok::<_, std::io::Error>(7u32)
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    gate.add_permits(1);
    assert!(
        eventually(Duration::from_secs(10), || async {
            cache.get::<u32>(("model", "slow")).await.unwrap() == Some(7)
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_ahead_serves_the_current_value_and_refreshes_once_in_the_background() {
    let t = tiers();
    let cache = t.cache();
    let calls = Arc::new(AtomicUsize::new(0));
    let opts = SetOptions::new().ttl(Duration::from_secs(30)).refresh_ahead(0.001);
    let load = |v: &'static str| {
        let calls = calls.clone();
        move || async move {
            calls.fetch_add(1, SeqCst);
            Ok::<_, std::io::Error>(v.to_string())
        }
    };
    let first: String =
        cache.get_or_refresh(("doc", "hot"), &opts.clone(), load("v1")).await.unwrap();
    assert_eq!(first, "v1");
    // 0.1 % of 30 s is 30 ms: a read after that is due for a refresh, well before expiry.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let served: String =
        cache.get_or_refresh(("doc", "hot"), &opts.clone(), load("v2")).await.unwrap();
    assert_eq!(served, "v1", "refresh-ahead serves the current value");
    assert!(
        eventually(Duration::from_secs(10), || async {
            cache.get::<String>(("doc", "hot")).await.unwrap().as_deref() == Some("v2")
        })
        .await,
        "the background refresh never landed"
    );
    assert_eq!(calls.load(SeqCst), 2);
    // Without refresh-ahead nothing is reloaded on a hit.
    let plain = SetOptions::new().ttl(Duration::from_secs(30));
    let again: String = cache.get_or_refresh(("doc", "hot"), &plain, load("v3")).await.unwrap();
    assert_eq!(again, "v2");
    assert_eq!(calls.load(SeqCst), 2);
}

#[tokio::test]
async fn ttl_jitter_spreads_expiries_within_its_bound() {
    let t = tiers();
    let cache = t.cache();
    let opts = SetOptions::new().ttl(Duration::from_secs(60)).ttl_jitter(Duration::from_secs(10));
    let mut expiries = std::collections::BTreeSet::new();
    for i in 0..50 {
        cache.set_with(("doc", &i.to_string()), &i, &opts).await.unwrap();
        let key = cache.keys().build_key("doc", &i.to_string(), None).unwrap();
        let raw = t.disk.get(key.as_str()).await.unwrap().unwrap();
        let env = aurelis_cache::Envelope::decode(raw).unwrap();
        let ttl = env.expires_at_ms.unwrap() - env.created_at_ms;
        assert!((60_000..=70_000).contains(&ttl), "ttl {ttl} ms outside 60-70 s");
        expiries.insert(ttl);
    }
    assert!(expiries.len() > 10, "jitter should spread the TTLs: {expiries:?}");
}
