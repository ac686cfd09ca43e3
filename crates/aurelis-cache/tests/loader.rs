//! `get_or_compute`: request coalescing, loader errors never cached, fail-safe stale serving.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::{ErrorKind, SetOptions};
use common::tiers;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_run_the_loader_once() {
    let t = tiers();
    let cache = t.cache();
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let cache = cache.clone();
            let calls = calls.clone();
            tokio::spawn(async move {
                cache
                    .get_or_compute("model", "slow-prompt", None, SetOptions::new(), || async {
                        calls.fetch_add(1, SeqCst);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        Ok::<_, std::io::Error>("expensive answer".to_string())
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), "expensive answer");
    }
    assert_eq!(calls.load(SeqCst), 1, "the loader ran more than once");
    let report = cache.stats_report().await;
    assert_eq!(report.overall.loader_calls, 1);
    assert_eq!(report.overall.coalesced_waiters + 1 + report.overall.hits, 50);
    // Afterwards it is a plain hit.
    let again: String = cache
        .get_or_compute("model", "slow-prompt", None, SetOptions::new(), || async {
            Err::<String, _>(std::io::Error::other("must not be called"))
        })
        .await
        .unwrap();
    assert_eq!(again, "expensive answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loader_errors_reach_every_waiter_and_are_not_cached() {
    let t = tiers();
    let cache = t.cache();
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let cache = cache.clone();
            let calls = calls.clone();
            tokio::spawn(async move {
                cache
                    .get_or_compute("model", "flaky", None, SetOptions::new(), || async {
                        calls.fetch_add(1, SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Err::<String, _>(std::io::Error::other("upstream 503"))
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Loader);
        assert!(err.to_string().contains("upstream 503"), "{err}");
    }
    assert_eq!(calls.load(SeqCst), 1);
    // The error was not cached: the next call runs the loader again.
    let ok: String = cache
        .get_or_compute("model", "flaky", None, SetOptions::new(), || async {
            calls.fetch_add(1, SeqCst);
            Ok::<_, std::io::Error>("recovered".to_string())
        })
        .await
        .unwrap();
    assert_eq!(ok, "recovered");
    assert_eq!(calls.load(SeqCst), 2);
}

#[tokio::test]
async fn a_cancelled_leader_does_not_strand_the_waiters() {
    let t = tiers();
    let cache = t.cache();
    let leader = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_compute("model", "cancel", None, SetOptions::new(), || async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok::<_, std::io::Error>(1u32)
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    leader.abort();
    let got = tokio::time::timeout(
        Duration::from_secs(5),
        cache.get_or_compute("model", "cancel", None, SetOptions::new(), || async {
            Ok::<_, std::io::Error>(2u32)
        }),
    )
    .await
    .expect("waiter stranded by a cancelled leader")
    .unwrap();
    assert_eq!(got, 2);
}

#[tokio::test]
async fn stale_entry_is_served_when_the_loader_fails() {
    let t = tiers();
    let cache = t.cache();
    let opts = SetOptions::new().ttl(Duration::from_millis(200)).stale_for(Duration::from_secs(60));
    let first: String = cache
        .get_or_compute("model", "failsafe", None, opts.clone(), || async {
            Ok::<_, std::io::Error>("v1".to_string())
        })
        .await
        .unwrap();
    assert_eq!(first, "v1");
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Expired: a plain get misses.
    assert_eq!(cache.get::<String>("model", "failsafe", None).await.unwrap(), None);
    // The loader fails: the stale value is served instead of the error.
    let served: String = cache
        .get_or_compute("model", "failsafe", None, opts.clone(), || async {
            Err::<String, _>(std::io::Error::other("provider down"))
        })
        .await
        .unwrap();
    assert_eq!(served, "v1");
    assert_eq!(cache.stats_report().await.overall.stale_served, 1);
    // The loader works again: the fresh value replaces the stale one.
    let fresh: String = cache
        .get_or_compute("model", "failsafe", None, opts, || async {
            Ok::<_, std::io::Error>("v2".to_string())
        })
        .await
        .unwrap();
    assert_eq!(fresh, "v2");
}

#[tokio::test]
async fn without_a_stale_window_the_loader_error_is_returned() {
    let t = tiers();
    let cache = t.cache();
    let opts = SetOptions::new().ttl(Duration::from_millis(100));
    cache.set_with("model", "nofailsafe", None, &"v1".to_string(), &opts).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = cache
        .get_or_compute("model", "nofailsafe", None, opts, || async {
            Err::<String, _>(std::io::Error::other("provider down"))
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Loader);
}
