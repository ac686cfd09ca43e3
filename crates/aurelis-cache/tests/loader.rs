//! `get_or_compute`: request coalescing, loader errors never cached, fail-safe stale serving.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::{ErrorKind, SetOptions};
use common::tiers;

/// Waits until `n` callers wait on another caller's load (the stats count them as they join),
/// so a test can hold a loader until every caller is in, without a timing window.
async fn until_waiters(cache: &aurelis_cache::Cache, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while cache.stats().snapshot().coalesced_waiters < n {
        assert!(std::time::Instant::now() < deadline, "callers never joined the load");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_misses_run_the_loader_once() {
    let t = tiers();
    let cache = t.cache();
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (cache, calls, gate) = (cache.clone(), calls.clone(), gate.clone());
            tokio::spawn(async move {
                cache
                    .get_or_compute(("model", "slow-prompt"), || async move {
                        calls.fetch_add(1, SeqCst);
                        let _open = gate.acquire().await;
                        Ok::<_, std::io::Error>("expensive answer".to_string())
                    })
                    .await
            })
        })
        .collect();
    until_waiters(&cache, 999).await;
    gate.add_permits(1000);
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), "expensive answer");
    }
    assert_eq!(calls.load(SeqCst), 1, "the loader ran more than once");
    let report = cache.stats_report().await;
    assert_eq!(report.overall.loader_calls, 1);
    assert_eq!(report.overall.coalesced_waiters, 999);
    // Afterwards it is a plain hit.
    let again: String = cache
        .get_or_compute(("model", "slow-prompt"), || async {
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
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (cache, calls, gate) = (cache.clone(), calls.clone(), gate.clone());
            tokio::spawn(async move {
                cache
                    .get_or_compute(("model", "flaky"), || async move {
                        calls.fetch_add(1, SeqCst);
                        let _open = gate.acquire().await;
                        Err::<String, _>(std::io::Error::other("upstream 503"))
                    })
                    .await
            })
        })
        .collect();
    until_waiters(&cache, 9).await;
    gate.add_permits(10);
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Loader);
        assert!(
            format!("{err:#}").contains("upstream 503")
                || err.to_string().contains("upstream 503")
                || std::error::Error::source(&err)
                    .is_some_and(|s| s.to_string().contains("upstream 503")),
            "{err}"
        );
    }
    assert_eq!(calls.load(SeqCst), 1);
    // The error was not cached: the next call runs the loader again.
    let ok: String = cache
        .get_or_compute(("model", "flaky"), || async {
            calls.fetch_add(1, SeqCst);
            Ok::<_, std::io::Error>("recovered".to_string())
        })
        .await
        .unwrap();
    assert_eq!(ok, "recovered");
    assert_eq!(calls.load(SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leader_hands_the_load_to_a_waiter() {
    let t = tiers();
    let cache = t.cache();
    let started = Arc::new(tokio::sync::Notify::new());
    let leader = {
        let (cache, started) = (cache.clone(), started.clone());
        tokio::spawn(async move {
            cache
                .get_or_compute(("model", "cancel"), || async move {
                    started.notify_one();
                    std::future::pending::<Result<u32, std::io::Error>>().await
                })
                .await
        })
    };
    // The leader's loader runs: it holds the lead.
    started.notified().await;
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_compute(("model", "cancel"), || async { Ok::<_, std::io::Error>(2u32) })
                .await
        })
    };
    until_waiters(&cache, 1).await;
    leader.abort();
    let got = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("waiter stranded by a cancelled leader")
        .unwrap()
        .unwrap();
    assert_eq!(got, 2);
    assert_eq!(cache.get::<u32>(("model", "cancel")).await.unwrap(), Some(2));
}

#[tokio::test]
async fn a_cancelled_leader_without_waiters_leaves_nothing_in_flight() {
    let t = tiers();
    let cache = t.cache();
    let started = Arc::new(tokio::sync::Notify::new());
    let leader = {
        let (cache, started) = (cache.clone(), started.clone());
        tokio::spawn(async move {
            cache
                .get_or_compute(("model", "alone"), || async move {
                    started.notify_one();
                    std::future::pending::<Result<u32, std::io::Error>>().await
                })
                .await
        })
    };
    started.notified().await;
    leader.abort();
    let _ = leader.await;
    // The next caller leads a new load at once (no stale in-flight entry to wait on).
    let got = tokio::time::timeout(
        Duration::from_secs(5),
        cache.get_or_compute(("model", "alone"), || async { Ok::<_, std::io::Error>(3u32) }),
    )
    .await
    .expect("a dead flight was left behind")
    .unwrap();
    assert_eq!(got, 3);
    assert_eq!(cache.stats().snapshot().coalesced_waiters, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_asking_for_another_type_do_not_share_a_load() {
    let t = tiers();
    let cache = t.cache();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let text = {
        let (cache, gate) = (cache.clone(), gate.clone());
        tokio::spawn(async move {
            cache
                .get_or_compute(("doc", "typed"), || async move {
                    let _open = gate.acquire().await;
                    Ok::<_, std::io::Error>("text".to_string())
                })
                .await
        })
    };
    // A caller of another type runs its own loader and gets its own type, not a panic or a
    // codec error from the other caller's value.
    let number: u64 = cache
        .get_or_compute(("doc", "typed"), || async { Ok::<_, std::io::Error>(7u64) })
        .await
        .unwrap();
    assert_eq!(number, 7);
    gate.add_permits(1);
    assert_eq!(text.await.unwrap().unwrap(), "text");
    assert_eq!(cache.stats().snapshot().loader_calls, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_loaded_across_a_delete_is_returned_but_not_stored() {
    let t = tiers();
    let cache = t.cache();
    let started = Arc::new(tokio::sync::Notify::new());
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let load = {
        let (cache, started, gate) = (cache.clone(), started.clone(), gate.clone());
        tokio::spawn(async move {
            cache
                .get_or_compute(("doc", "racy"), || async move {
                    started.notify_one();
                    let _open = gate.acquire().await;
                    Ok::<_, std::io::Error>("read before the delete".to_string())
                })
                .await
        })
    };
    started.notified().await;
    cache.delete(("doc", "racy")).await.unwrap();
    gate.add_permits(1);
    assert_eq!(load.await.unwrap().unwrap(), "read before the delete");
    assert_eq!(
        cache.get::<String>(("doc", "racy")).await.unwrap(),
        None,
        "stored after the delete"
    );
    assert_eq!(cache.stats().snapshot().served_uncached, 1);
}

/// Starts `get_or_compute_with(("doc", id))`, tagged `t`, whose loader answers `answer` once
/// the returned gate gets a permit; returns when the loader runs.
async fn held_load(
    cache: &aurelis_cache::Cache,
    id: &str,
    answer: &'static str,
) -> (tokio::task::JoinHandle<aurelis_cache::Result<String>>, Arc<tokio::sync::Semaphore>) {
    let started = Arc::new(tokio::sync::Notify::new());
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let load = {
        let (cache, started, gate, id) =
            (cache.clone(), started.clone(), gate.clone(), id.to_owned());
        tokio::spawn(async move {
            let options = SetOptions::new().tag("t");
            cache
                .get_or_compute_with(("doc", &id), &options, || async move {
                    started.notify_one();
                    let _open = gate.acquire().await;
                    Ok::<_, std::io::Error>(answer.to_string())
                })
                .await
        })
    };
    started.notified().await;
    (load, gate)
}

/// A caller that arrives after a delete, a write or an invalidation of the key does not wait
/// for a load that began before it (whose value is as old as the change it missed): it runs
/// the loader itself. The earlier caller still gets its own load's value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_arriving_after_a_change_does_not_share_a_load_begun_before_it() {
    let t = tiers();
    let cache = t.cache();
    cache.set(("doc", "other"), &"unrelated".to_string()).await.unwrap();
    for (round, change) in
        ["delete", "set", "invalidate_category", "invalidate_tag", "clear"].into_iter().enumerate()
    {
        let id = format!("racy-{round}");
        let waiters_before = cache.stats().snapshot().coalesced_waiters;
        let (first, gate) = held_load(&cache, &id, "read before the change").await;
        match change {
            "delete" => drop(cache.delete(("doc", &id)).await.unwrap()),
            "set" => cache.set(("doc", &id), &"written".to_string()).await.unwrap(),
            "invalidate_category" => cache.invalidate_category("doc").await.unwrap(),
            "invalidate_tag" => cache.invalidate_tag("t").await.unwrap(),
            _ => cache.clear().await.unwrap(),
        }
        let second = {
            let (cache, id) = (cache.clone(), id.clone());
            tokio::spawn(async move {
                cache
                    .get_or_compute(("doc", &id), || async {
                        Ok::<_, std::io::Error>("read after the change".to_string())
                    })
                    .await
            })
        };
        // Were the second caller to wait on the first load, the gate opens and the test
        // fails on the value (not on a hang).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !second.is_finished() && cache.stats().snapshot().coalesced_waiters == waiters_before
        {
            assert!(std::time::Instant::now() < deadline, "{change}: the second call hangs");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        gate.add_permits(1);
        let expected = if change == "set" { "written" } else { "read after the change" };
        assert_eq!(second.await.unwrap().unwrap(), expected, "after {change}");
        assert_eq!(first.await.unwrap().unwrap(), "read before the change", "after {change}");
        assert_eq!(
            cache.stats().snapshot().coalesced_waiters,
            waiters_before,
            "after {change}: the second caller waited on the older load"
        );
        assert_eq!(
            cache.get::<String>(("doc", &id)).await.unwrap().as_deref(),
            Some(expected),
            "after {change}: the older load was stored over what came after it"
        );
    }
}

/// Invalidations of other categories, tags or patterns while a slow load runs (common in a
/// busy service: every record update invalidates its own tag) do not keep the loaded value
/// out of the cache; one that covers the key does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_invalidations_covering_the_key_keep_a_load_out() {
    let t = tiers();
    let cache = t.cache();
    let cases: [(&str, bool); 6] = [
        ("category other", true),
        ("tag other", true),
        ("pattern other", true),
        ("category doc", false),
        ("tag t", false),
        ("clear", false),
    ];
    for (round, (change, kept)) in cases.into_iter().enumerate() {
        let id = format!("slow-{round}");
        let (load, gate) = held_load(&cache, &id, "answer").await;
        match change {
            "category other" => cache.invalidate_category("other").await.unwrap(),
            "tag other" => cache.invalidate_tag("u").await.unwrap(),
            "pattern other" => cache.invalidate_pattern("other:*").await.unwrap(),
            "category doc" => cache.invalidate_category("doc").await.unwrap(),
            "tag t" => cache.invalidate_tag("t").await.unwrap(),
            _ => cache.clear().await.unwrap(),
        }
        gate.add_permits(1);
        assert_eq!(load.await.unwrap().unwrap(), "answer", "{change}");
        let cached = cache.get::<String>(("doc", &id)).await.unwrap();
        assert_eq!(cached.is_some(), kept, "{change}: cached {cached:?}");
    }
}

#[tokio::test]
async fn a_value_no_tier_can_store_is_still_returned() {
    let t = tiers();
    let cache = t.cache();
    t.memory_faults.fail_writes(true);
    t.disk_faults.fail_writes(true);
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..2 {
        let calls = calls.clone();
        let v: String = cache
            .get_or_compute(("doc", "unstorable"), || async move {
                calls.fetch_add(1, SeqCst);
                Ok::<_, std::io::Error>("paid for".to_string())
            })
            .await
            .expect("the loaded value is served even when no tier takes it");
        assert_eq!(v, "paid for");
    }
    assert_eq!(cache.stats().snapshot().served_uncached, 2);
    // A value over max_value_bytes is served too.
    let small = t.builder().max_value_bytes(8).build().unwrap();
    let big: String = small
        .get_or_compute(("doc", "big"), || async { Ok::<_, std::io::Error>("x".repeat(100)) })
        .await
        .unwrap();
    assert_eq!(big.len(), 100);
}

#[tokio::test]
async fn any_boxed_error_type_works_as_a_loader_error() {
    let t = tiers();
    let cache = t.cache();
    let err = cache
        .get_or_compute(("doc", "boxed"), || async {
            Err::<u8, Box<dyn std::error::Error + Send + Sync>>("a plain message".into())
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Loader);
    let source = std::error::Error::source(&err).expect("the loader's error is the source");
    assert_eq!(source.to_string(), "a plain message");
}

#[tokio::test]
async fn the_loaders_own_error_is_the_source_and_downcasts_to_its_type() {
    let t = tiers();
    let cache = t.cache();
    let err = cache
        .get_or_compute(("doc", "timeout"), || async {
            Err::<u8, _>(std::io::Error::new(std::io::ErrorKind::TimedOut, "upstream slow"))
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Loader);
    let source = std::error::Error::source(&err).expect("a source");
    let io = source.downcast_ref::<std::io::Error>().expect("the loader's io::Error");
    assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    assert!(err.to_string().ends_with("upstream slow"), "{err}");
}

#[tokio::test]
async fn stale_entry_is_served_when_the_loader_fails() {
    let t = tiers();
    let cache = t.cache();
    let opts = SetOptions::new().ttl(Duration::from_millis(200)).stale_for(Duration::from_secs(60));
    let first: String = cache
        .get_or_compute_with(("model", "failsafe"), &opts.clone(), || async {
            Ok::<_, std::io::Error>("v1".to_string())
        })
        .await
        .unwrap();
    assert_eq!(first, "v1");
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Expired: a plain get misses.
    assert_eq!(cache.get::<String>(("model", "failsafe")).await.unwrap(), None);
    // The loader fails: the stale value is served instead of the error.
    let served: String = cache
        .get_or_compute_with(("model", "failsafe"), &opts.clone(), || async {
            Err::<String, _>(std::io::Error::other("provider down"))
        })
        .await
        .unwrap();
    assert_eq!(served, "v1");
    assert_eq!(cache.stats_report().await.overall.stale_served, 1);
    // The loader works again: the fresh value replaces the stale one.
    let fresh: String = cache
        .get_or_compute_with(("model", "failsafe"), &opts, || async {
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
    cache.set_with(("model", "nofailsafe"), &"v1".to_string(), &opts).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = cache
        .get_or_compute_with(("model", "nofailsafe"), &opts, || async {
            Err::<String, _>(std::io::Error::other("provider down"))
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Loader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_never_overwrites_a_write_made_while_it_was_storing() {
    // Seeded rounds of a load racing a set: whatever the interleaving, once both returned the
    // cache holds the set's value or nothing, never the load's older one.
    let t = tiers();
    let cache = t.cache();
    for round in 0..1000u32 {
        let id = format!("race{round}");
        let load = {
            let (cache, id) = (cache.clone(), id.clone());
            tokio::spawn(async move {
                cache
                    .get_or_compute(("doc", &id), || async {
                        tokio::task::yield_now().await;
                        Ok::<_, std::io::Error>("loaded (older)".to_string())
                    })
                    .await
                    .unwrap()
            })
        };
        if round % 2 == 0 {
            tokio::task::yield_now().await;
        }
        cache.set(("doc", &id), &"written".to_string()).await.unwrap();
        load.await.unwrap();
        let got = cache.get::<String>(("doc", &id)).await.unwrap();
        assert_ne!(
            got.as_deref(),
            Some("loaded (older)"),
            "round {round}: the set was overwritten"
        );
    }
}

#[tokio::test]
async fn loaders_may_fail_with_anyhow_and_the_cause_is_kept() {
    let t = tiers();
    let cache = t.cache();
    let err = cache
        .get_or_compute(("reports", "anyhow"), || async {
            Err::<u8, _>(anyhow::anyhow!("upstream said no").context("loading the report"))
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Loader);
    let mut chain = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(&err);
    while let Some(e) = source {
        chain.push_str(&e.to_string());
        chain.push('|');
        source = e.source();
    }
    assert!(chain.contains("loading the report"), "{chain}");
    // Not cached: the next call runs its loader.
    let v = cache
        .get_or_compute(("reports", "anyhow"), || async { Ok::<_, anyhow::Error>(5u8) })
        .await
        .unwrap();
    assert_eq!(v, 5);
}
