//! Entries the memory tier keeps decoded (`Arc<T>` and metadata, no envelope bytes) honour
//! what entries kept as bytes honour: the tier's TTL cap, the entry's TTL, tags, categories,
//! stale windows, write-back and statistics. The shared fixture wraps the memory tier in a
//! fault injector (which keeps it a byte store), so these tests use a plain `MokaStore`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::{Cache, MokaStore, SetOptions, SledStore, Store, Tier};
use common::tier;

struct Fixture {
    cache: Cache,
    memory: Arc<MokaStore>,
    disk: Option<Arc<SledStore>>,
    _dir: tempfile::TempDir,
}

/// A plain moka memory tier capped at `memory_ttl`, over a sled disk tier (one day) if `disk`.
fn fixture(memory_ttl: Duration, disk: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let memory = Arc::new(MokaStore::builder().max_entries(10_000).build().unwrap());
    let mut builder = Cache::builder()
        .tier(Tier::new("memory", memory.clone() as Arc<dyn Store>).ttl(memory_ttl).priority(2));
    let disk =
        disk.then(|| Arc::new(SledStore::builder().path(dir.path().join("db")).build().unwrap()));
    if let Some(disk) = &disk {
        builder = builder.tier(
            Tier::new("disk", disk.clone() as Arc<dyn Store>)
                .ttl(Duration::from_secs(86_400))
                .priority(1),
        );
    }
    Fixture { cache: builder.build().unwrap(), memory, disk, _dir: dir }
}

impl Fixture {
    /// Whether the memory tier holds `(category, id)` decoded (not as bytes).
    fn decoded(&self, category: &str, id: &str) -> bool {
        let key = self.cache.keys().build_key(category, id, None).unwrap();
        self.memory.as_value_store().unwrap().get_value(key.as_str()).is_some()
    }

    /// Loads `value` under `(category, id)` with `options` (kept decoded in memory).
    async fn load(&self, category: &str, id: &str, value: &str, options: &SetOptions) {
        let value = value.to_string();
        let got: String = self
            .cache
            .get_or_compute_with((category, id), options, || async move {
                Ok::<_, std::io::Error>(value)
            })
            .await
            .unwrap();
        assert!(self.decoded(category, id), "{category}/{id} ({got}) is not kept decoded");
    }
}

const LONG: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn the_tier_ttl_cap_expires_decoded_entries() {
    let f = fixture(Duration::from_millis(100), false);
    f.load("doc", "capped", "v", &SetOptions::new().ttl(LONG)).await;
    assert_eq!(f.cache.get::<String>(("doc", "capped")).await.unwrap().as_deref(), Some("v"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(f.cache.get::<String>(("doc", "capped")).await.unwrap(), None);
    assert_eq!(f.cache.get_shared::<String>(("doc", "capped")).await.unwrap(), None);
}

#[tokio::test]
async fn past_the_memory_cap_the_disk_answers_and_the_value_is_copied_up_decoded() {
    let f = fixture(Duration::from_millis(100), true);
    f.load("doc", "d", "v", &SetOptions::new().ttl(LONG)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = f.cache.stats_report().await;
    assert_eq!(f.cache.get::<String>(("doc", "d")).await.unwrap().as_deref(), Some("v"));
    let after = f.cache.stats_report().await;
    assert_eq!(tier(&after, "disk").hits, tier(&before, "disk").hits + 1, "the disk answered");
    assert!(f.decoded("doc", "d"), "the write-back keeps it decoded");
    let a = f.cache.get_shared::<String>(("doc", "d")).await.unwrap().unwrap();
    let b = f.cache.get_shared::<String>(("doc", "d")).await.unwrap().unwrap();
    assert!(Arc::ptr_eq(&a, &b), "memory hits share the decoded value");
    assert_eq!(tier(&f.cache.stats_report().await, "disk").hits, tier(&after, "disk").hits);
}

#[tokio::test]
async fn the_entry_ttl_expires_decoded_entries() {
    let f = fixture(LONG, true);
    f.load("doc", "short", "v", &SetOptions::new().ttl(Duration::from_millis(100))).await;
    f.load("doc", "long", "w", &SetOptions::new().ttl(LONG)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(f.cache.get::<String>(("doc", "short")).await.unwrap(), None);
    assert_eq!(f.cache.get_shared::<String>(("doc", "short")).await.unwrap(), None);
    assert_eq!(f.cache.get::<String>(("doc", "long")).await.unwrap().as_deref(), Some("w"));
}

#[tokio::test]
async fn tags_categories_and_keys_invalidate_decoded_entries() {
    let f = fixture(LONG, true);
    let tagged = SetOptions::new().ttl(LONG).tag("user:1");
    f.load("profile", "1", "tagged", &tagged).await;
    f.load("profile", "2", "untagged", &SetOptions::new().ttl(LONG)).await;
    f.load("search", "q", "in another category", &SetOptions::new().ttl(LONG)).await;
    f.load("search", "r", "deleted by key", &SetOptions::new().ttl(LONG)).await;

    f.cache.invalidate_tag("user:1").await.unwrap();
    assert_eq!(f.cache.get::<String>(("profile", "1")).await.unwrap(), None);
    assert_eq!(f.cache.get_shared::<String>(("profile", "1")).await.unwrap(), None);
    assert_eq!(f.cache.get::<String>(("profile", "2")).await.unwrap().as_deref(), Some("untagged"));

    f.cache.invalidate(("search", "r")).await.unwrap();
    assert_eq!(f.cache.get::<String>(("search", "r")).await.unwrap(), None);
    assert!(f.cache.get::<String>(("search", "q")).await.unwrap().is_some());

    f.cache.invalidate_category("search").await.unwrap();
    assert_eq!(f.cache.get::<String>(("search", "q")).await.unwrap(), None);
    assert!(f.cache.get::<String>(("profile", "2")).await.unwrap().is_some());

    // A load after the invalidation is kept (decoded) and served.
    f.load("profile", "1", "reloaded", &tagged).await;
    assert_eq!(f.cache.get::<String>(("profile", "1")).await.unwrap().as_deref(), Some("reloaded"));
}

#[tokio::test]
async fn a_decoded_entry_is_served_stale_only_when_the_loader_fails() {
    let f = fixture(LONG, false);
    let opts = SetOptions::new().ttl(Duration::from_millis(100)).stale_for(LONG);
    f.load("model", "answer", "v1", &opts).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    // A plain read never returns a stale value.
    assert_eq!(f.cache.get::<String>(("model", "answer")).await.unwrap(), None);
    let got: String = f
        .cache
        .get_or_compute_with(("model", "answer"), &opts, || async {
            Err::<String, _>(std::io::Error::other("provider down"))
        })
        .await
        .unwrap();
    assert_eq!(got, "v1");
    assert_eq!(f.cache.stats().snapshot().stale_served, 1);
    // A loader that works replaces it.
    let got: String = f
        .cache
        .get_or_compute_with(("model", "answer"), &opts, || async {
            Ok::<_, std::io::Error>("v2".to_string())
        })
        .await
        .unwrap();
    assert_eq!(got, "v2");
    assert_eq!(f.cache.get::<String>(("model", "answer")).await.unwrap().as_deref(), Some("v2"));
}

#[tokio::test]
async fn decoded_hits_are_counted_once_per_read_for_the_tier_and_the_cache() {
    let f = fixture(LONG, true);
    f.load("doc", "n", "v", &SetOptions::new().ttl(LONG)).await;
    let before = f.cache.stats_report().await;
    for _ in 0..5 {
        assert!(f.cache.get::<String>(("doc", "n")).await.unwrap().is_some());
    }
    for _ in 0..3 {
        assert!(f.cache.get_shared::<String>(("doc", "n")).await.unwrap().is_some());
    }
    assert!(f.cache.get::<String>(("doc", "absent")).await.unwrap().is_none());
    let after = f.cache.stats_report().await;
    assert_eq!(after.overall.hits - before.overall.hits, 8);
    assert_eq!(after.overall.misses - before.overall.misses, 1);
    assert_eq!(tier(&after, "memory").hits - tier(&before, "memory").hits, 8);
    assert_eq!(tier(&after, "memory").misses - tier(&before, "memory").misses, 1);
    assert_eq!(tier(&after, "disk").hits, tier(&before, "disk").hits, "memory answered all");
    assert!(f.disk.is_some());
}
