//! Behaviour the issue listed as untested: strict mode on writes and invalidations, codecs
//! end to end and across writers, garbage in the in-process tier, patterns over identifiers
//! holding `:`, and namespace/version isolation on shared stores.

mod common;

use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::core::testkit::{Corruption, MemoryMapStore};
use aurelis_cache::{Cache, Codec, ErrorKind, MokaStore, Store, Tier};
use common::{tier, tiers};

#[tokio::test]
async fn strict_mode_reports_failed_writes_deletes_and_invalidations() {
    let t = tiers();
    let cache = t.builder().strict(true).build().unwrap();
    cache.set(("doc", "d"), &1u8).await.unwrap();
    t.disk_faults.fail_writes(true);
    let err = cache.set(("doc", "d"), &2u8).await.unwrap_err();
    assert!(err.message().contains("partial failure"), "{err}");
    assert_eq!(err.tier(), Some("disk"));
    let err = cache.delete(("doc", "d")).await.unwrap_err();
    assert!(err.message().contains("partial failure"), "{err}");
    // A category invalidation is a mark: it is kept on the disk tier, which fails here.
    let err = cache.invalidate_category("doc").await.unwrap_err();
    assert_eq!(err.tier(), Some("disk"));
    // Whatever failed, nothing stale is served: the memory tier took the delete.
    assert_eq!(cache.get::<u8>(("doc", "d")).await.unwrap(), None);
    // Without strict mode the same calls succeed (the disk tier is repaired later).
    let lenient = t.builder().build().unwrap();
    lenient.set(("doc", "e"), &1u8).await.unwrap();
    lenient.delete(("doc", "e")).await.unwrap();
    lenient.invalidate_category("doc").await.unwrap();
}

#[tokio::test]
async fn every_codec_round_trips_and_reads_what_the_others_wrote() {
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Answer {
        text: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        reasoning: Option<String>,
        tool_args: serde_json::Value,
    }
    let answer = Answer {
        text: "hi".into(),
        reasoning: None,
        tool_args: serde_json::json!({"city": "Oslo", "days": [1, 2]}),
    };
    let shared: Arc<dyn Store> = Arc::new(MemoryMapStore::new("shared"));
    let cache_with = |codec: Codec| {
        Cache::builder().codec(codec).tier(Tier::new("store", shared.clone())).build().unwrap()
    };
    let json = cache_with(Codec::Json);
    let msgpack = cache_with(Codec::MessagePack);
    let postcard = cache_with(Codec::Postcard);
    json.set(("a", "json"), &answer).await.unwrap();
    msgpack.set(("a", "msgpack"), &answer).await.unwrap();
    for reader in [&json, &msgpack, &postcard] {
        assert_eq!(reader.get::<Answer>(("a", "json")).await.unwrap(), Some(answer.clone()));
        assert_eq!(reader.get::<Answer>(("a", "msgpack")).await.unwrap(), Some(answer.clone()));
    }
    // Postcard cannot read back a `serde_json::Value`: a counted local miss, never a panic.
    postcard.set(("a", "postcard"), &answer).await.unwrap();
    assert_eq!(postcard.get::<Answer>(("a", "postcard")).await.unwrap(), None);
    assert_eq!(postcard.stats().snapshot().type_mismatches, 1);
    // Plain data is fine under postcard, and other codecs read it.
    postcard.set(("a", "plain"), &("x".to_string(), 3u32)).await.unwrap();
    assert_eq!(json.get::<(String, u32)>(("a", "plain")).await.unwrap(), Some(("x".into(), 3)));
}

#[tokio::test]
async fn garbage_in_the_memory_tier_is_a_counted_miss_and_the_disk_answers() {
    let t = tiers();
    let cache = t.cache();
    cache.set(("doc", "d"), &"v".to_string()).await.unwrap();
    for how in [Corruption::Garbage, Corruption::Truncate] {
        t.memory_faults.corrupt(Some(how));
        assert_eq!(cache.get::<String>(("doc", "d")).await.unwrap().as_deref(), Some("v"));
    }
    t.memory_faults.corrupt(None);
    let report = cache.stats_report().await;
    assert_eq!(tier(&report, "memory").corrupt, 2);
    assert_eq!(tier(&report, "disk").hits, 2);
}

#[tokio::test]
async fn patterns_match_identifiers_holding_colons_in_their_escaped_form() {
    let t = tiers();
    let cache = t.cache();
    cache.set(("doc", "user:1:profile"), &1u8).await.unwrap();
    cache.set(("doc", "user:2:profile"), &2u8).await.unwrap();
    cache.set(("doc", "team:1"), &3u8).await.unwrap();
    // `:` inside an identifier is stored as `%3A`.
    cache.invalidate_pattern("doc:user%3A*").await.unwrap();
    assert_eq!(cache.get::<u8>(("doc", "user:1:profile")).await.unwrap(), None);
    assert_eq!(cache.get::<u8>(("doc", "user:2:profile")).await.unwrap(), None);
    assert_eq!(cache.get::<u8>(("doc", "team:1")).await.unwrap(), Some(3));
}

#[tokio::test]
async fn namespaces_and_versions_sharing_stores_do_not_see_each_other() {
    let shared: Arc<dyn Store> = Arc::new(MemoryMapStore::new("shared"));
    let memory: Arc<dyn Store> = Arc::new(MokaStore::builder().build().unwrap());
    let build = |ns: &str, v: &str| {
        Cache::builder()
            .namespace(ns)
            .version(v)
            .tier(Tier::new("memory", memory.clone()).priority(2))
            .tier(Tier::new("shared", shared.clone()).priority(1))
            .build()
            .unwrap()
    };
    let a = build("app", "v1");
    let a2 = build("app", "v2");
    let b = build("other", "v1");
    for c in [&a, &a2, &b] {
        c.set(("doc", "d"), &c.keys().prefix().to_string()).await.unwrap();
    }
    assert_eq!(a.get::<String>(("doc", "d")).await.unwrap().as_deref(), Some("app:v1:"));
    assert_eq!(a2.get::<String>(("doc", "d")).await.unwrap().as_deref(), Some("app:v2:"));
    assert_eq!(b.get::<String>(("doc", "d")).await.unwrap().as_deref(), Some("other:v1:"));
    // A clear, a category and a tag invalidation reach only their own namespace and version.
    a.clear().await.unwrap();
    a.invalidate_category("doc").await.unwrap();
    assert_eq!(a.get::<String>(("doc", "d")).await.unwrap(), None);
    assert_eq!(a2.get::<String>(("doc", "d")).await.unwrap().as_deref(), Some("app:v2:"));
    assert_eq!(b.get::<String>(("doc", "d")).await.unwrap().as_deref(), Some("other:v1:"));
}

#[tokio::test]
async fn marks_survive_a_restart_on_the_disk_tier() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let disk: Arc<dyn Store> = Arc::new(
            aurelis_cache::SledStore::builder().path(dir.path().join("db")).build().unwrap(),
        );
        Cache::builder()
            .tier(Tier::new("disk", disk).ttl(Duration::from_secs(3600)))
            .build()
            .unwrap()
    };
    {
        let cache = open();
        let tagged = aurelis_cache::SetOptions::new().tag("user:7");
        cache.set_with(("profile", "7"), &1u8, &tagged).await.unwrap();
        cache.set(("session", "s"), &2u8).await.unwrap();
        cache.set(("kept", "k"), &3u8).await.unwrap();
        cache.invalidate_tag("user:7").await.unwrap();
        cache.invalidate_category("session").await.unwrap();
        cache.close(Duration::from_secs(5)).await.unwrap();
    }
    // Wait until sled released its lock.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let cache = loop {
        match std::panic::catch_unwind(open) {
            Ok(c) => break c,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(_) => panic!("the disk tier was never released"),
        }
    };
    assert_eq!(cache.get::<u8>(("profile", "7")).await.unwrap(), None, "tag mark lost");
    assert_eq!(cache.get::<u8>(("session", "s")).await.unwrap(), None, "category mark lost");
    assert_eq!(cache.get::<u8>(("kept", "k")).await.unwrap(), Some(3));
}

#[tokio::test]
async fn a_tier_refusing_one_value_does_not_serve_its_older_copy() {
    // The memory tier caps values at 64 bytes: a larger overwrite is refused there
    // (ValueTooLarge, not an outage), and the memory tier must not keep serving the old value.
    let t = tiers();
    let memory: Arc<dyn Store> = Arc::new(MokaStore::builder().max_bytes(64).build().unwrap());
    let cache = Cache::builder()
        .tier(Tier::new("memory", memory).priority(2))
        .tier(Tier::new("disk", t.disk.clone()).priority(1))
        .build()
        .unwrap();
    cache.set(("doc", "d"), &"small".to_string()).await.unwrap();
    let big = "x".repeat(500);
    cache.set(("doc", "d"), &big).await.unwrap();
    assert_eq!(cache.get::<String>(("doc", "d")).await.unwrap(), Some(big));
    assert!(!cache.is_tier_down("memory"), "a refused value is not an outage");
    let err_kinds = cache.stats_report().await;
    assert_eq!(tier(&err_kinds, "memory").errors, 1);
    let _ = ErrorKind::ValueTooLarge;
}

#[tokio::test]
async fn a_memory_hit_of_another_type_is_a_local_miss_and_the_next_tier_answers() {
    let t = tiers();
    let memory: Arc<dyn Store> = Arc::new(MokaStore::builder().build().unwrap());
    let cache = Cache::builder()
        .tier(Tier::new("memory", memory.clone()).priority(2))
        .tier(Tier::new("disk", t.disk.clone()).priority(1))
        .build()
        .unwrap();
    cache.set(("doc", "d"), &7u64).await.unwrap();
    // Read as u64 (decoded and kept decoded in memory), then as String: a local miss in
    // memory and on disk, never a panic or a wrong value.
    assert_eq!(cache.get::<u64>(("doc", "d")).await.unwrap(), Some(7));
    assert!(memory
        .as_value_store()
        .unwrap()
        .get_value(cache.keys().build_key("doc", "d", None).unwrap().as_str())
        .is_some());
    assert_eq!(cache.get::<String>(("doc", "d")).await.unwrap(), None);
    assert_eq!(cache.stats().snapshot().type_mismatches, 2);
    assert_eq!(cache.get::<u64>(("doc", "d")).await.unwrap(), Some(7));
}

#[tokio::test]
async fn a_value_kept_decoded_as_one_type_is_still_read_as_another_that_fits_it() {
    // One memory tier, nothing under it: the entry's bytes are all there is.
    let memory = Arc::new(MokaStore::builder().build().unwrap());
    let cache = Cache::builder()
        .tier(Tier::new("memory", memory.clone() as Arc<dyn Store>))
        .build()
        .unwrap();
    cache.set(("doc", "n"), &7u32).await.unwrap();
    // The first read, as u64, keeps the entry decoded as a u64.
    assert_eq!(cache.get::<u64>(("doc", "n")).await.unwrap(), Some(7));
    let first = cache.get_shared::<u64>(("doc", "n")).await.unwrap().unwrap();
    // A read as the type it was written as still finds it (the bytes, encoded again): it
    // is not a miss because another type was read first.
    assert_eq!(cache.get::<u32>(("doc", "n")).await.unwrap(), Some(7));
    assert_eq!(cache.get_shared::<u32>(("doc", "n")).await.unwrap().as_deref(), Some(&7));
    assert_eq!(
        cache
            .get_or_compute(("doc", "n"), || async { Err::<u32, _>("the value is cached") })
            .await
            .unwrap(),
        7
    );
    // And it does not take the entry over: the u64 is still the one kept.
    let again = cache.get_shared::<u64>(("doc", "n")).await.unwrap().unwrap();
    assert!(Arc::ptr_eq(&first, &again), "the decoded u64 was replaced");
    // A type the value does not fit is a miss, counted once.
    assert_eq!(cache.get::<String>(("doc", "n")).await.unwrap(), None);
    let snap = cache.stats().snapshot();
    assert_eq!(snap.type_mismatches, 1);
    assert_eq!(snap.hits, 6);
}
