//! Tiering: lookup order, write-back with the remaining lifetime, per-tier TTL caps, typed
//! values, `None` and unit values, batches and invalidation across tiers.

mod common;

use std::time::Duration;

use aurelis_cache::{Params, SetOptions};
use common::{eventually, tier, tiers};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    name: String,
    role: String,
    logins: u32,
}

fn john() -> User {
    User { name: "John".into(), role: "developer".into(), logins: 7 }
}

#[tokio::test]
async fn typed_round_trip_through_every_tier() {
    let t = tiers();
    let cache = t.cache();
    cache.set(("user_data", "user123"), &john()).await.unwrap();
    assert_eq!(cache.get::<User>(("user_data", "user123")).await.unwrap(), Some(john()));
    let key = cache.keys().build_key("user_data", "user123", None).unwrap();
    assert!(t.memory.get(key.as_str()).await.unwrap().is_some(), "memory tier not written");
    assert!(t.disk.get(key.as_str()).await.unwrap().is_some(), "disk tier not written");
    assert_eq!(cache.get::<User>(("user_data", "nobody")).await.unwrap(), None);
    let report = cache.stats_report().await;
    assert_eq!(report.overall.hits, 1);
    assert_eq!(report.overall.misses, 1);
    assert_eq!(tier(&report, "memory").hits, 1);
    assert_eq!(tier(&report, "disk").hits, 0, "memory should have answered");
}

#[tokio::test]
async fn params_are_part_of_the_key() {
    let t = tiers();
    let cache = t.cache();
    let p1 = Params::new().with("page", 1).with("limit", 10);
    let p2 = Params::new().with("page", 2).with("limit", 10);
    cache.set(("search_results", "query123", Some(&p1)), &vec!["a", "b"]).await.unwrap();
    assert_eq!(
        cache.get::<Vec<String>>(("search_results", "query123", Some(&p1))).await.unwrap(),
        Some(vec!["a".to_string(), "b".to_string()])
    );
    assert_eq!(
        cache.get::<Vec<String>>(("search_results", "query123", Some(&p2))).await.unwrap(),
        None
    );
    assert_eq!(cache.get::<Vec<String>>(("search_results", "query123")).await.unwrap(), None);
    let reordered = Params::new().with("limit", 10).with("page", 1);
    assert!(cache
        .get::<Vec<String>>(("search_results", "query123", Some(&reordered)))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn cached_none_and_unit_are_hits_not_misses() {
    let t = tiers();
    let cache = t.cache();
    cache.set(("lookup", "absent-user"), &None::<User>).await.unwrap();
    assert_eq!(cache.get::<Option<User>>(("lookup", "absent-user")).await.unwrap(), Some(None));
    assert_eq!(cache.get::<Option<User>>(("lookup", "never-written")).await.unwrap(), None);
    cache.set(("done", "job-1"), &()).await.unwrap();
    assert_eq!(cache.get::<()>(("done", "job-1")).await.unwrap(), Some(()));
    assert_eq!(cache.get::<()>(("done", "job-2")).await.unwrap(), None);
    // Also when served by the disk tier after a restart of the memory tier.
    t.memory.clear().await.unwrap();
    assert_eq!(cache.get::<Option<User>>(("lookup", "absent-user")).await.unwrap(), Some(None));
    assert_eq!(cache.get::<()>(("done", "job-1")).await.unwrap(), Some(()));
}

#[tokio::test]
async fn disk_hit_is_written_back_to_memory() {
    let t = tiers();
    let cache = t.cache();
    cache.set(("doc", "d1"), &"body".to_string()).await.unwrap();
    let key = cache.keys().build_key("doc", "d1", None).unwrap();
    t.memory.clear().await.unwrap();
    assert_eq!(t.memory.get(key.as_str()).await.unwrap(), None);

    assert_eq!(cache.get::<String>(("doc", "d1")).await.unwrap().as_deref(), Some("body"));
    assert!(t.memory.get(key.as_str()).await.unwrap().is_some(), "not written back");
    let report = cache.stats_report().await;
    assert_eq!(tier(&report, "disk").hits, 1);
    assert_eq!(tier(&report, "memory").misses, 1);
    assert_eq!(tier(&report, "memory").writebacks, 1);

    // The next read is answered by memory.
    cache.get::<String>(("doc", "d1")).await.unwrap();
    let report = cache.stats_report().await;
    assert_eq!(tier(&report, "memory").hits, 1);
    assert_eq!(tier(&report, "disk").hits, 1);
}

#[tokio::test]
async fn write_back_keeps_the_remaining_lifetime() {
    let t = tiers();
    let cache = t.cache();
    let opts = SetOptions::new().ttl(Duration::from_millis(1200));
    cache.set_with(("doc", "short"), &1u8, &opts).await.unwrap();
    let key = cache.keys().build_key("doc", "short", None).unwrap();
    t.memory.clear().await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Served by disk and written back with what is left (~600 ms), not 1200 ms or 300 s.
    assert_eq!(cache.get::<u8>(("doc", "short")).await.unwrap(), Some(1));
    assert!(t.memory.get(key.as_str()).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(t.memory.get(key.as_str()).await.unwrap(), None, "write-back outlived the entry");
    assert_eq!(cache.get::<u8>(("doc", "short")).await.unwrap(), None);
}

#[tokio::test]
async fn each_tier_caps_the_ttl() {
    let t = tiers();
    let cache =
        t.builder_with(Duration::from_millis(300), Duration::from_secs(3600)).build().unwrap();
    cache.set(("doc", "capped"), &"v".to_string()).await.unwrap();
    let key = cache.keys().build_key("doc", "capped", None).unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(t.memory.get(key.as_str()).await.unwrap(), None, "memory cap ignored");
    assert!(t.disk.get(key.as_str()).await.unwrap().is_some(), "disk dropped it too early");
    assert_eq!(cache.get::<String>(("doc", "capped")).await.unwrap().as_deref(), Some("v"));
    // An entry TTL shorter than every cap wins everywhere.
    let opts = SetOptions::new().ttl(Duration::from_millis(200));
    cache.set_with(("doc", "own-ttl"), &"v".to_string(), &opts).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let key = cache.keys().build_key("doc", "own-ttl", None).unwrap();
    assert_eq!(t.disk.get(key.as_str()).await.unwrap(), None, "disk kept an expired entry");
    assert_eq!(cache.get::<String>(("doc", "own-ttl")).await.unwrap(), None);
}

#[tokio::test]
async fn get_many_mixes_tiers_and_writes_back() {
    let t = tiers();
    let cache = t.cache();
    for i in 0..10u32 {
        cache.set(("item", &i.to_string()), &i).await.unwrap();
    }
    // Drop the even ones from memory: they must come from disk.
    for i in (0..10u32).step_by(2) {
        let key = cache.keys().build_key("item", &i.to_string(), None).unwrap();
        t.memory.delete(key.as_str()).await.unwrap();
    }
    let ids: Vec<String> = (0..12u32).map(|i| i.to_string()).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let got = cache.get_many::<u32>(refs.iter().map(|id| ("item", id))).await.unwrap();
    let want: Vec<Option<u32>> = (0..12u32).map(|i| (i < 10).then_some(i)).collect();
    assert_eq!(got, want);
    let report = cache.stats_report().await;
    assert_eq!(tier(&report, "memory").hits, 5);
    assert_eq!(tier(&report, "disk").hits, 5);
    assert_eq!(tier(&report, "memory").writebacks, 5);
    assert_eq!(report.overall.hits, 10);
    assert_eq!(report.overall.misses, 2);
}

#[tokio::test]
async fn set_many_writes_every_tier() {
    let t = tiers();
    let cache = t.cache();
    let entries: Vec<(&str, String)> =
        vec![("a", "1".into()), ("b", "2".into()), ("c", "3".into())];
    cache
        .set_many(
            &entries.iter().map(|(id, v)| (("letters", *id), v)).collect::<Vec<_>>(),
            &SetOptions::new(),
        )
        .await
        .unwrap();
    t.memory.clear().await.unwrap();
    assert_eq!(
        cache
            .get_many::<String>([("letters", "c"), ("letters", "a"), ("letters", "z")])
            .await
            .unwrap(),
        vec![Some("3".into()), Some("1".into()), None]
    );
}

#[tokio::test]
async fn invalidation_reaches_every_tier() {
    let t = tiers();
    let cache = t.cache();
    for id in ["1", "2", "3"] {
        cache.set(("user_data", id), &id.to_string()).await.unwrap();
        cache.set(("session", id), &id.to_string()).await.unwrap();
    }
    cache.set(("model_info", "gpt-4o"), &"info".to_string()).await.unwrap();
    cache.set(("model_info", "gpt-4o-mini"), &"info".to_string()).await.unwrap();
    cache.set(("model_info", "claude"), &"info".to_string()).await.unwrap();

    assert!(cache.delete(("user_data", "1")).await.unwrap());
    assert!(!cache.delete(("user_data", "1")).await.unwrap());
    assert_eq!(cache.get::<String>(("user_data", "1")).await.unwrap(), None);

    cache.invalidate_category("user_data").await.unwrap();
    assert_eq!(cache.get::<String>(("user_data", "2")).await.unwrap(), None);
    assert!(cache.get::<String>(("session", "2")).await.unwrap().is_some());

    cache.invalidate_pattern("model_info:gpt-4o*").await.unwrap();
    assert!(cache.get::<String>(("model_info", "claude")).await.unwrap().is_some());
    assert_eq!(cache.get::<String>(("model_info", "gpt-4o-mini")).await.unwrap(), None);

    // 2 entries in each of 2 tiers.
    cache.clear().await.unwrap();
    for id in ["1", "2", "3"] {
        assert_eq!(cache.get::<String>(("session", id)).await.unwrap(), None);
    }
    // The memory tier emptied, the disk tier still holds entries, but none is served.
    t.memory.clear().await.unwrap();
    assert!(t.disk.len().await.unwrap() > 0, "a clear is a mark, not a scan");
    assert_eq!(cache.get::<String>(("model_info", "claude")).await.unwrap(), None);
    assert!(cache.invalidate_pattern("").await.is_err());
}

#[tokio::test]
async fn tag_invalidation_hides_tagged_entries_in_every_tier() {
    let t = tiers();
    let cache = t.cache();
    let tagged = SetOptions::new().tag("user:42");
    cache.set_with(("profile", "42"), &"p".to_string(), &tagged).await.unwrap();
    cache.set_with(("posts", "42"), &"q".to_string(), &tagged).await.unwrap();
    cache.set(("posts", "43"), &"r".to_string()).await.unwrap();
    cache.invalidate_tag("user:42").await.unwrap();
    assert_eq!(cache.get::<String>(("profile", "42")).await.unwrap(), None);
    t.memory.clear().await.unwrap();
    assert_eq!(cache.get::<String>(("posts", "42")).await.unwrap(), None, "disk served it");
    assert!(cache.get::<String>(("posts", "43")).await.unwrap().is_some());
    // Written after the invalidation: visible again.
    cache.set_with(("profile", "42"), &"new".to_string(), &tagged).await.unwrap();
    assert_eq!(cache.get::<String>(("profile", "42")).await.unwrap().as_deref(), Some("new"));
    let key = cache.keys().build_key("posts", "42", None).unwrap();
    assert!(
        eventually(Duration::from_secs(2), || async {
            t.disk.get(key.as_str()).await.unwrap().is_none()
        })
        .await,
        "invalidated entry not dropped from disk"
    );
}

#[tokio::test]
async fn model_keys_and_model_invalidation() {
    let t = tiers();
    let cache = t.cache();
    let params = Params::new().with("temperature", 0.0).with("max_tokens", 256);
    let k1 = cache.keys().build_model_key("gpt-4o", "What is Rust?", &params).unwrap();
    let k2 = cache.keys().build_model_key("gpt-4o", "What is Go?", &params).unwrap();
    let k3 = cache.keys().build_model_key("claude", "What is Rust?", &params).unwrap();
    for k in [&k1, &k2, &k3] {
        cache.set(k, &format!("answer for {k}")).await.unwrap();
    }
    cache.invalidate_model("gpt-4o").await.unwrap();
    assert_eq!(cache.get::<String>(&k1).await.unwrap(), None);
    assert!(cache.get::<String>(&k3).await.unwrap().is_some());
}

#[tokio::test]
async fn layers_are_ordered_by_priority() {
    let t = tiers();
    let cache = aurelis_cache::Cache::builder()
        .tier(aurelis_cache::Tier::new("disk", t.disk.clone()).priority(1))
        .tier(aurelis_cache::Tier::new("memory", t.memory.clone()).priority(3))
        .build()
        .unwrap();
    assert_eq!(cache.tier_names(), ["memory", "disk"]);
}

#[tokio::test]
async fn stats_report_is_json_with_entries_and_latency() {
    let t = tiers();
    let cache = t.cache();
    for i in 0..5u32 {
        cache.set(("n", &i.to_string()), &i).await.unwrap();
    }
    // 64 reads on this thread: latencies are sampled, one read in 16 is timed.
    for round in 0..64u32 {
        let i = round % 5;
        assert_eq!(cache.get::<u32>(("n", &i.to_string())).await.unwrap(), Some(i));
    }
    let report = cache.stats_report().await;
    assert_eq!(tier(&report, "memory").entries, Some(5));
    assert_eq!(tier(&report, "disk").entries, Some(5));
    assert!(tier(&report, "disk").bytes.unwrap() > 0);
    assert_eq!(tier(&report, "memory").latency["get"].count, 64 / 16);
    assert_eq!(report.overall.get_latency.count, 64 / 16);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["overall"]["hits"], 64);
    assert_eq!(json["overall"]["hit_rate"], 1.0);
}
