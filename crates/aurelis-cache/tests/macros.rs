//! `#[cached]` at run time: hits and misses, TTL, keys (golden strings, stable across two
//! caches sharing a disk tier and across processes), coalescing (seeded, counting body runs),
//! `Err` and `None` not cached, methods, every companion, `invalidate_on` with the
//! invalidator, and the fallback to the body when the cache fails.
//!
//! Most functions take their cache as a skipped argument (`cache = cache`), so each test has
//! its own; `model_responses` uses the process-wide cache, which only
//! `the_process_wide_cache_is_the_default` installs.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::core::testkit::FaultyStore;
use aurelis_cache::{
    cached, Cache, CacheInvalidator, ErrorKind, EventContext, MokaStore, SledStore, Tier,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

fn memory_cache() -> Cache {
    Cache::builder()
        .tier(Tier::new("memory", Arc::new(MokaStore::builder().build().unwrap())))
        .build()
        .unwrap()
}

/// Body runs, per function.
#[derive(Default)]
struct Runs(AtomicUsize);

impl Runs {
    fn bump(&self) {
        self.0.fetch_add(1, SeqCst);
    }
    fn get(&self) -> usize {
        self.0.load(SeqCst)
    }
}

// ----- hit, miss, TTL -----------------------------------------------------------------------

static ADD_RUNS: Runs = Runs(AtomicUsize::new(0));

#[cached(cache = cache, category = "add")]
async fn add(#[cached(skip)] cache: &Cache, a: u32, b: u32) -> u32 {
    ADD_RUNS.bump();
    a + b
}

#[tokio::test]
async fn a_second_call_with_the_same_arguments_is_a_hit() {
    let cache = memory_cache();
    let before = ADD_RUNS.get();
    assert_eq!(add(&cache, 1, 2).await, 3);
    assert_eq!(add(&cache, 1, 2).await, 3);
    assert_eq!(ADD_RUNS.get() - before, 1, "the second call ran the body");
    // Other arguments, another entry; the order of arguments matters.
    assert_eq!(add(&cache, 2, 1).await, 3);
    assert_eq!(ADD_RUNS.get() - before, 2);
    let stats = cache.stats().snapshot();
    assert_eq!((stats.hits, stats.misses, stats.loader_calls), (1, 2, 2));
    // The value is in the cache under the key the companion names.
    let key = add_cache_key(&cache, 1, 2).unwrap();
    assert_eq!(cache.get::<u32>(&key).await.unwrap(), Some(3));
}

static SHORT_RUNS: Runs = Runs(AtomicUsize::new(0));

#[cached(cache = cache, category = "short", ttl = Duration::from_secs(1))]
async fn short_lived(#[cached(skip)] cache: &Cache, id: u32) -> String {
    SHORT_RUNS.bump();
    format!("v{id}")
}

static LONG_RUNS: Runs = Runs(AtomicUsize::new(0));

#[cached(cache = cache, category = "long", ttl = 3600)]
async fn long_lived(#[cached(skip)] cache: &Cache, id: u32) -> String {
    LONG_RUNS.bump();
    format!("v{id}")
}

#[tokio::test]
async fn entries_expire_after_their_ttl() {
    let cache = memory_cache();
    short_lived(&cache, 1).await;
    long_lived(&cache, 1).await;
    short_lived(&cache, 1).await;
    assert_eq!((SHORT_RUNS.get(), LONG_RUNS.get()), (1, 1));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // Expired: the body runs again. The hour-long entry is still there.
    assert_eq!(short_lived(&cache, 1).await, "v1");
    assert_eq!(long_lived(&cache, 1).await, "v1");
    assert_eq!((SHORT_RUNS.get(), LONG_RUNS.get()), (2, 1));
}

// ----- keys ---------------------------------------------------------------------------------

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Options {
    temperature: f64,
    stop: Vec<String>,
}

#[cached(cache = cache, category = "model_responses")]
async fn get_model_response(
    #[cached(skip)] cache: &Cache,
    model_type: &str,
    prompt: &str,
) -> String {
    format!("{model_type} says hi to {prompt:?}")
}

#[cached(cache = cache)]
async fn default_category(#[cached(skip)] cache: &Cache) -> u8 {
    let _ = cache;
    1
}

static SEARCH_RUNS: Runs = Runs(AtomicUsize::new(0));

#[cached(cache = cache, category = "search")]
async fn search(
    #[cached(skip)] cache: &Cache,
    query: String,
    filters: HashMap<String, i64>,
    options: Options,
    #[cached(skip)] trace_id: u64,
) -> Vec<String> {
    let _ = (cache, &filters, &options, trace_id);
    SEARCH_RUNS.bump();
    vec![query]
}

#[cached(cache = cache, category = "user_data", key = user_id)]
async fn user_by_id(#[cached(skip)] cache: &Cache, user_id: u64, verbose: bool) -> String {
    format!("user {user_id} {verbose}")
}

#[cached(cache = cache, category = "user_data", key = format!("user:{user_id}"))]
async fn user_by_text_key(#[cached(skip)] cache: &Cache, user_id: &str) -> String {
    format!("user {user_id}")
}

#[cached(cache = cache, category = "user_data", key = (user_id, &options))]
async fn user_by_structured_key(
    #[cached(skip)] cache: &Cache,
    user_id: &str,
    options: BTreeMap<String, String>,
) -> String {
    format!("user {user_id} {}", options.len())
}

fn filters(pairs: &[(&str, i64)]) -> HashMap<String, i64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

/// A change of any of these strings is a change of the key scheme: every cache written by an
/// earlier release goes cold. Change them only with a new `KEY_SCHEMA` and a changelog line.
#[test]
fn golden_keys() {
    let cache = memory_cache();
    assert_eq!(
        get_model_response_cache_key(&cache, "gpt-4", "Hi").unwrap().as_str(),
        "aurelis:v1:model_responses:get_model_response:283c650fe35af5687a770048067999b4"
    );
    // The hash is the documented one: blake3 of the canonical JSON of the arguments by name
    // and the key-schema version, first 128 bits.
    assert_eq!(
        get_model_response_cache_key(&cache, "gpt-4", "Hi").unwrap().as_str(),
        format!(
            "aurelis:v1:model_responses:get_model_response:{}",
            aurelis_cache::core::key::hash_hex(
                br#"{"@schema":1,"model_type":"gpt-4","prompt":"Hi"}"#
            )
        )
    );
    assert_eq!(
        default_category_cache_key(&cache).unwrap().as_str(),
        "aurelis:v1:macros.default_category:default_category:af861c371b0a07b52b5a4548604b29dd"
    );
    assert_eq!(
        "af861c371b0a07b52b5a4548604b29dd",
        aurelis_cache::core::key::hash_hex(br#"{"@schema":1}"#)
    );
    let options = Options { temperature: 0.5, stop: vec!["\n".into()] };
    assert_eq!(
        search_cache_key(
            &cache,
            "rust".into(),
            filters(&[("year", 2024), ("page", 2)]),
            options.clone(),
            7
        )
        .unwrap()
        .as_str(),
        "aurelis:v1:search:search:960fccfbb400d64396a299a1e3afdffe"
    );
    assert_eq!(
        search_cache_key(&cache, "rust".into(), filters(&[("page", 2), ("year", 2024)]), options, 8)
            .unwrap()
            .as_str(),
        format!(
            "aurelis:v1:search:search:{}",
            aurelis_cache::core::key::hash_hex(
                br#"{"@schema":1,"filters":{"page":2,"year":2024},"options":{"stop":["\n"],"temperature":0.5},"query":"rust"}"#
            )
        )
    );
    assert_eq!(user_by_id_cache_key(&cache, 42, true).unwrap().as_str(), "aurelis:v1:user_data:42");
    assert_eq!(
        user_by_text_key_cache_key(&cache, "u:1").unwrap().as_str(),
        "aurelis:v1:user_data:user%3Au%3A1"
    );
    let opts: BTreeMap<String, String> = [("lang".to_owned(), "en".to_owned())].into();
    assert_eq!(
        user_by_structured_key_cache_key(&cache, "u1", opts).unwrap().as_str(),
        "aurelis:v1:user_data:user_by_structured_key:f2df441c414b80f953e0a8f8d093568a"
    );
    assert_eq!(
        "f2df441c414b80f953e0a8f8d093568a",
        aurelis_cache::core::key::hash_hex(br#"{"@key":["u1",{"lang":"en"}],"@schema":1}"#)
    );
}

#[test]
fn keys_ignore_map_order_and_skipped_arguments_and_follow_the_key_builder() {
    let cache = memory_cache();
    let options = Options { temperature: 0.5, stop: vec![] };
    // HashMaps built in different orders (and of different capacities, so iteration orders
    // differ) give one key.
    let mut a = HashMap::with_capacity(64);
    let mut b = HashMap::new();
    for i in 0..32 {
        a.insert(format!("k{i}"), i);
    }
    for i in (0..32).rev() {
        b.insert(format!("k{i}"), i);
    }
    let ka = search_cache_key(&cache, "q".into(), a, options.clone(), 1).unwrap();
    let kb = search_cache_key(&cache, "q".into(), b.clone(), options.clone(), 2).unwrap();
    assert_eq!(ka, kb, "map order or the skipped trace_id changed the key");
    b.insert("k0".into(), -1);
    assert_ne!(ka, search_cache_key(&cache, "q".into(), b, options, 1).unwrap());
    // The cache's namespace and version are part of the key.
    let other = Cache::builder()
        .namespace("myapp")
        .version("v7")
        .tier(Tier::new("memory", Arc::new(MokaStore::builder().build().unwrap())))
        .build()
        .unwrap();
    let key = get_model_response_cache_key(&other, "gpt-4", "Hi").unwrap();
    assert!(key.as_str().starts_with("myapp:v7:model_responses:get_model_response:"), "{key}");
}

static SHARED_RUNS: Runs = Runs(AtomicUsize::new(0));

#[cached(cache = cache, category = "shared_disk")]
async fn shared_answer(#[cached(skip)] cache: &Cache, question: String, n: u32) -> String {
    SHARED_RUNS.bump();
    format!("{question}:{n}")
}

fn disk_cache(dir: &std::path::Path) -> aurelis_cache::Result<Cache> {
    let disk = SledStore::builder().path(dir.join("db")).build()?;
    Cache::builder()
        .tier(Tier::new("memory", Arc::new(MokaStore::builder().build()?)))
        .tier(Tier::new("disk", Arc::new(disk)))
        .build()
}

/// Builds with `build` until sled has released the previous instance's lock (at most 10 s).
async fn reopen(dir: &std::path::Path) -> Cache {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match disk_cache(dir) {
            Ok(cache) => return cache,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the disk tier was never released: {e}"),
        }
    }
}

#[tokio::test]
async fn two_caches_built_one_after_the_other_share_entries_through_the_disk_tier() {
    let dir = tempfile::tempdir().unwrap();
    let first = disk_cache(dir.path()).unwrap();
    assert_eq!(shared_answer(&first, "life".into(), 42).await, "life:42");
    assert_eq!(SHARED_RUNS.get(), 1);
    first.close(Duration::from_secs(5)).await.unwrap();
    drop(first);
    // A new cache: empty memory tier, the same disk. The key is the same, so it is a hit.
    let second = reopen(dir.path()).await;
    assert_eq!(shared_answer(&second, "life".into(), 42).await, "life:42");
    assert_eq!(SHARED_RUNS.get(), 1, "the second cache did not find the entry");
    assert_eq!(second.stats().snapshot().hits, 1);
}

const CHILD_DIR: &str = "AURELIS_MACROS_TEST_DIR";

/// The child of `keys_are_the_same_in_another_process`: runs only when started by it.
#[tokio::test]
#[ignore = "run by `keys_are_the_same_in_another_process` in a child process"]
async fn child_fills_the_disk_tier() {
    let dir = std::env::var_os(CHILD_DIR).expect("started by the parent test");
    let cache = disk_cache(std::path::Path::new(&dir)).unwrap();
    let options = Options { temperature: 0.25, stop: vec!["END".into()] };
    let answer = search(&cache, "child".into(), filters(&[("b", 2), ("a", 1)]), options, 1).await;
    assert_eq!(answer, ["child"]);
    assert_eq!(cache.close(Duration::from_secs(10)).await.unwrap(), 0);
    std::process::exit(0);
}

#[test]
fn keys_are_the_same_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_fills_the_disk_tier", "--nocapture"])
        .env(CHILD_DIR, dir.path())
        .status()
        .expect("start the child");
    assert!(status.success(), "the child failed: {status}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let cache = reopen(dir.path()).await;
        // The same arguments, the map built in another order and another (skipped) trace id:
        // the child's entry, so the body does not run in this process.
        let options = Options { temperature: 0.25, stop: vec!["END".into()] };
        let answer =
            search(&cache, "child".into(), filters(&[("a", 1), ("b", 2)]), options, 9).await;
        assert_eq!(answer, ["child"]);
        assert_eq!(SEARCH_RUNS.get(), 0, "the entry written by the other process was not found");
        assert_eq!(cache.stats().snapshot().hits, 1);
    });
}

// ----- coalescing ---------------------------------------------------------------------------

static SLOW_RUNS: Runs = Runs(AtomicUsize::new(0));

/// Held at `gate` until the test opens it, so every call overlaps every other.
#[cached(cache = cache, category = "slow")]
async fn slow_square(
    #[cached(skip)] cache: &Cache,
    #[cached(skip)] gate: &Semaphore,
    n: u64,
) -> u64 {
    SLOW_RUNS.bump();
    gate.acquire().await.unwrap().forget();
    n * n
}

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_with_the_same_arguments_run_the_body_once() {
    const CALLS: usize = 400;
    const KEYS: u64 = 40;
    let cache = memory_cache();
    let gate = Arc::new(Semaphore::new(0));
    let mut rng = Rng(0x5eed_cafe);
    // Every key at least once, then random keys, in a seeded random order.
    let mut args: Vec<u64> =
        (0..KEYS).chain((KEYS as usize..CALLS).map(|_| rng.next() % KEYS)).collect();
    for i in (1..args.len()).rev() {
        args.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    let tasks: Vec<_> = args
        .iter()
        .map(|&n| {
            let (cache, gate) = (cache.clone(), gate.clone());
            tokio::spawn(async move { (n, slow_square(&cache, &gate, n).await) })
        })
        .collect();
    // Wait (bounded) until one call per key is in the body and every other call waits on it.
    let parked = common::eventually(Duration::from_secs(20), || {
        let waiting = cache.stats().snapshot().coalesced_waiters;
        let runs = SLOW_RUNS.get();
        async move { waiting == (CALLS as u64 - KEYS) && runs == KEYS as usize }
    })
    .await;
    assert!(
        parked,
        "callers did not all wait: {} body runs, {:?}",
        SLOW_RUNS.get(),
        cache.stats().snapshot()
    );
    gate.add_permits(CALLS);
    for task in tasks {
        let (n, squared) = task.await.unwrap();
        assert_eq!(squared, n * n);
    }
    assert_eq!(SLOW_RUNS.get(), KEYS as usize, "a key's body ran more than once");
}

// ----- Result and Option --------------------------------------------------------------------

/// An error type that is not `std::error::Error`, not `Clone`, not `Serialize`: it is handed
/// back as it is.
#[derive(Debug, PartialEq)]
enum FetchError {
    NotFound(u64),
    Unavailable,
}

static FETCH_RUNS: Runs = Runs(AtomicUsize::new(0));

#[cached(cache = cache, category = "fetch")]
async fn fetch(
    #[cached(skip)] cache: &Cache,
    #[cached(skip)] up: bool,
    id: u64,
) -> Result<String, FetchError> {
    FETCH_RUNS.bump();
    match (up, id) {
        (false, _) => Err(FetchError::Unavailable),
        (true, 0) => Err(FetchError::NotFound(0)),
        (true, id) => Ok(format!("doc {id}")),
    }
}

#[tokio::test]
async fn errors_are_returned_as_they_are_and_not_cached() {
    let cache = memory_cache();
    let before = FETCH_RUNS.get();
    assert_eq!(fetch(&cache, true, 0).await, Err(FetchError::NotFound(0)));
    assert_eq!(fetch(&cache, true, 0).await, Err(FetchError::NotFound(0)));
    assert_eq!(FETCH_RUNS.get() - before, 2, "an error was cached");
    // A failure, then a success: the success is cached.
    assert_eq!(fetch(&cache, false, 7).await, Err(FetchError::Unavailable));
    assert_eq!(fetch(&cache, true, 7).await.as_deref(), Ok("doc 7"));
    assert_eq!(fetch(&cache, false, 7).await.as_deref(), Ok("doc 7"));
    assert_eq!(FETCH_RUNS.get() - before, 4);
    assert_eq!(cache.stats().snapshot().loader_errors, 3);
}

static CACHED_ERR_RUNS: Runs = Runs(AtomicUsize::new(0));

#[cached(cache = cache, category = "negative", cache_err)]
async fn fetch_caching_errors(#[cached(skip)] cache: &Cache, id: u64) -> Result<String, String> {
    CACHED_ERR_RUNS.bump();
    Err(format!("no document {id}"))
}

#[tokio::test]
async fn cache_err_caches_errors_too() {
    let cache = memory_cache();
    assert_eq!(fetch_caching_errors(&cache, 1).await, Err("no document 1".into()));
    assert_eq!(fetch_caching_errors(&cache, 1).await, Err("no document 1".into()));
    assert_eq!(CACHED_ERR_RUNS.get(), 1);
}

static FIND_RUNS: Runs = Runs(AtomicUsize::new(0));

#[cached(cache = cache, category = "find")]
async fn find(#[cached(skip)] cache: &Cache, name: &str) -> Option<u32> {
    FIND_RUNS.bump();
    name.strip_prefix("user").and_then(|n| n.parse().ok())
}

static FIND_ALL_RUNS: Runs = Runs(AtomicUsize::new(0));

#[cached(cache = cache, category = "find_all", cache_none)]
async fn find_caching_none(#[cached(skip)] cache: &Cache, name: &str) -> Option<u32> {
    FIND_ALL_RUNS.bump();
    name.strip_prefix("user").and_then(|n| n.parse().ok())
}

#[tokio::test]
async fn none_is_not_cached_unless_asked() {
    let cache = memory_cache();
    assert_eq!(find(&cache, "nobody").await, None);
    assert_eq!(find(&cache, "nobody").await, None);
    assert_eq!(FIND_RUNS.get(), 2, "None was cached");
    assert_eq!(find(&cache, "user7").await, Some(7));
    assert_eq!(find(&cache, "user7").await, Some(7));
    assert_eq!(FIND_RUNS.get(), 3);

    assert_eq!(find_caching_none(&cache, "nobody").await, None);
    assert_eq!(find_caching_none(&cache, "nobody").await, None);
    assert_eq!(FIND_ALL_RUNS.get(), 1);
}

static GATED_ERR_RUNS: Runs = Runs(AtomicUsize::new(0));

#[cached(cache = cache, category = "gated_err")]
async fn gated_failure(
    #[cached(skip)] cache: &Cache,
    #[cached(skip)] gate: &Semaphore,
    id: u64,
) -> Result<u64, FetchError> {
    GATED_ERR_RUNS.bump();
    gate.acquire().await.unwrap().forget();
    Err(FetchError::NotFound(id))
}

static GATED_NONE_RUNS: Runs = Runs(AtomicUsize::new(0));

#[cached(cache = cache, category = "gated_none")]
async fn gated_none(
    #[cached(skip)] cache: &Cache,
    #[cached(skip)] gate: &Semaphore,
    id: u64,
) -> Option<u64> {
    GATED_NONE_RUNS.bump();
    gate.acquire().await.unwrap().forget();
    (id > 1_000).then_some(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_none_reaches_every_waiter_and_a_shared_error_is_rerun_by_each() {
    const CALLS: usize = 20;
    let cache = memory_cache();
    let gate = Arc::new(Semaphore::new(0));
    let nones: Vec<_> = (0..CALLS)
        .map(|_| {
            let (cache, gate) = (cache.clone(), gate.clone());
            tokio::spawn(async move { gated_none(&cache, &gate, 5).await })
        })
        .collect();
    let parked = common::eventually(Duration::from_secs(20), || {
        let waiting = cache.stats().snapshot().coalesced_waiters;
        async move { waiting == CALLS as u64 - 1 }
    })
    .await;
    assert!(parked, "callers did not all wait");
    gate.add_permits(1);
    for t in nones {
        assert_eq!(t.await.unwrap(), None);
    }
    assert_eq!(GATED_NONE_RUNS.get(), 1, "waiters of a load that returned None ran the body");

    // An error is not shared (the error type need not be Clone): each waiter runs the body
    // itself and gets its own error.
    let gate = Arc::new(Semaphore::new(0));
    let before = cache.stats().snapshot().coalesced_waiters;
    let errors: Vec<_> = (0..CALLS)
        .map(|_| {
            let (cache, gate) = (cache.clone(), gate.clone());
            tokio::spawn(async move { gated_failure(&cache, &gate, 9).await })
        })
        .collect();
    let parked = common::eventually(Duration::from_secs(20), || {
        let waiting = cache.stats().snapshot().coalesced_waiters - before;
        async move { waiting == CALLS as u64 - 1 }
    })
    .await;
    assert!(parked, "callers did not all wait");
    gate.add_permits(CALLS);
    for t in errors {
        assert_eq!(t.await.unwrap(), Err(FetchError::NotFound(9)));
    }
    assert_eq!(GATED_ERR_RUNS.get(), CALLS);
}

// ----- methods ------------------------------------------------------------------------------

struct ModelService {
    cache: Cache,
    tenant: String,
    runs: AtomicUsize,
    loads: u32,
}

impl ModelService {
    #[cached(cache = self.cache, category = "models", ttl = 3600)]
    async fn get_model_info(&self, model_type: &str) -> BTreeMap<String, String> {
        self.runs.fetch_add(1, SeqCst);
        [("name".to_owned(), model_type.to_owned())].into()
    }

    /// The tenant is part of the key through `key`.
    #[cached(cache = self.cache, category = "model_limits", key = (&self.tenant, model_type))]
    async fn get_limits(&self, model_type: &str) -> u32 {
        self.runs.fetch_add(1, SeqCst);
        if model_type == "gpt-4" {
            8_192
        } else {
            4_096
        }
    }

    #[cached(cache = self.cache, category = "model_loads")]
    async fn load(&mut self, model_type: String) -> u32 {
        self.loads += 1;
        model_type.len() as u32
    }
}

#[tokio::test]
async fn methods_are_cached_with_self_left_out_of_the_key() {
    let cache = memory_cache();
    let a = ModelService {
        cache: cache.clone(),
        tenant: "a".into(),
        runs: AtomicUsize::new(0),
        loads: 0,
    };
    let b = ModelService {
        cache: cache.clone(),
        tenant: "b".into(),
        runs: AtomicUsize::new(0),
        loads: 0,
    };
    assert_eq!(a.get_model_info("gpt-4").await["name"], "gpt-4");
    // `self` is not in the key: another instance over the same cache hits.
    assert_eq!(b.get_model_info("gpt-4").await["name"], "gpt-4");
    assert_eq!(a.runs.load(SeqCst) + b.runs.load(SeqCst), 1);
    // Unless `key` puts a field of `self` in it.
    assert_eq!(a.get_limits("gpt-4").await, 8_192);
    assert_eq!(b.get_limits("gpt-4").await, 8_192);
    assert_eq!(a.get_limits("gpt-4").await, 8_192);
    assert_eq!(a.runs.load(SeqCst) + b.runs.load(SeqCst), 3);
    assert_ne!(a.get_limits_cache_key("gpt-4").unwrap(), b.get_limits_cache_key("gpt-4").unwrap());
    // The companions of a method are methods too.
    a.get_model_info_invalidate("gpt-4").await.unwrap();
    assert_eq!(b.get_model_info("gpt-4").await["name"], "gpt-4");
    assert_eq!(a.runs.load(SeqCst) + b.runs.load(SeqCst), 4);
    assert_eq!(a.get_model_info_refresh("o1").await["name"], "o1");
    assert_eq!(b.get_model_info("o1").await["name"], "o1");
    assert_eq!(a.runs.load(SeqCst) + b.runs.load(SeqCst), 5);
    a.get_model_info_invalidate_all().await.unwrap();
    b.get_model_info("o1").await;
    b.get_model_info("gpt-4").await;
    assert_eq!(a.runs.load(SeqCst) + b.runs.load(SeqCst), 7);
    // `&mut self` methods.
    let mut a = a;
    assert_eq!(a.load("gpt-4".into()).await, 5);
    assert_eq!(a.load("gpt-4".into()).await, 5);
    assert_eq!(a.loads, 1);
    assert_eq!(a.load_no_cache("gpt-4".into()).await, 5);
    assert_eq!(a.loads, 2);
}

// ----- companions ---------------------------------------------------------------------------

static PRICE_RUNS: Runs = Runs(AtomicUsize::new(0));
static PRICE: AtomicUsize = AtomicUsize::new(100);

#[cached(cache = cache, category = "prices", tags = ["prices", format!("item:{item}")])]
async fn price(#[cached(skip)] cache: &Cache, item: &str) -> usize {
    PRICE_RUNS.bump();
    PRICE.load(SeqCst) + item.len()
}

#[tokio::test]
async fn every_companion_does_what_its_name_says() {
    let cache = memory_cache();
    assert_eq!(price(&cache, "tea").await, 103);
    assert_eq!(price(&cache, "coffee").await, 106);
    assert_eq!(PRICE_RUNS.get(), 2);
    PRICE.store(200, SeqCst);

    // _no_cache: runs the body, reads and writes nothing.
    assert_eq!(price_no_cache(&cache, "tea").await, 203);
    assert_eq!(PRICE_RUNS.get(), 3);
    assert_eq!(price(&cache, "tea").await, 103, "_no_cache changed the cached value");

    // _refresh: runs the body and stores its result.
    assert_eq!(price_refresh(&cache, "tea").await, 203);
    assert_eq!(PRICE_RUNS.get(), 4);
    assert_eq!(price(&cache, "tea").await, 203);
    assert_eq!(PRICE_RUNS.get(), 4);

    // _cache_key: where the entry lives.
    let key = price_cache_key(&cache, "coffee").unwrap();
    assert_eq!(cache.get::<usize>(&key).await.unwrap(), Some(106));

    // _invalidate: one argument set.
    price_invalidate(&cache, "coffee").await.unwrap();
    assert_eq!(cache.get::<usize>(&key).await.unwrap(), None);
    assert_eq!(price(&cache, "coffee").await, 206);
    assert_eq!(price(&cache, "tea").await, 203);
    assert_eq!(PRICE_RUNS.get(), 5);

    // Tags from the arguments.
    cache.invalidate_tag("item:tea").await.unwrap();
    assert_eq!(price(&cache, "coffee").await, 206);
    assert_eq!(price(&cache, "tea").await, 203);
    assert_eq!(PRICE_RUNS.get(), 6);

    // _invalidate_all: every entry of the function.
    price_invalidate_all(&cache).await.unwrap();
    PRICE.store(300, SeqCst);
    assert_eq!(price(&cache, "tea").await, 303);
    assert_eq!(price(&cache, "coffee").await, 306);
    assert_eq!(PRICE_RUNS.get(), 8);
}

// ----- invalidate_on ------------------------------------------------------------------------

static CONFIG_RUNS: Runs = Runs(AtomicUsize::new(0));

struct ConfigService {
    cache: Cache,
}

impl ConfigService {
    #[cached(cache = self.cache, category = "model_config", ttl = 600, invalidate_on = ["model_config_updated"])]
    async fn get_model_config(&self, model_type: &str) -> String {
        CONFIG_RUNS.bump();
        format!("{model_type}: temperature 0.7")
    }
}

static PROMPT_RUNS: Runs = Runs(AtomicUsize::new(0));

#[cached(cache = cache, invalidate_on = ["model_config_updated", "prompts_updated"])]
async fn system_prompt(#[cached(skip)] cache: &Cache, model_type: &str) -> String {
    PROMPT_RUNS.bump();
    format!("You are {model_type}.")
}

#[tokio::test]
async fn invalidate_on_events_reach_the_functions_through_the_invalidator() {
    let cache = memory_cache();
    let service = ConfigService { cache: cache.clone() };
    service.get_model_config("gpt-4").await;
    service.get_model_config("gpt-4").await;
    system_prompt(&cache, "gpt-4").await;
    assert_eq!((CONFIG_RUNS.get(), PROMPT_RUNS.get()), (1, 1));

    let invalidator = CacheInvalidator::new(cache.clone());
    // Registered at compile time: visible before any rule is added.
    assert_eq!(invalidator.triggers(), ["model_config_updated", "prompts_updated"]);
    assert_eq!(
        invalidator.targets("model_config_updated").unwrap(),
        ["category:macros.system_prompt", "category:model_config"]
    );
    // A rule of the application for the same event adds to them.
    invalidator.register_invalidation_rule("model_config_updated", ["tag:configs"]).unwrap();
    let applied = invalidator
        .invalidate_on_event("model_config_updated", &EventContext::new())
        .await
        .unwrap();
    assert_eq!(applied.len(), 3, "{applied:?}");

    service.get_model_config("gpt-4").await;
    system_prompt(&cache, "gpt-4").await;
    assert_eq!((CONFIG_RUNS.get(), PROMPT_RUNS.get()), (2, 2));

    invalidator.invalidate_on_event("prompts_updated", &EventContext::new()).await.unwrap();
    service.get_model_config("gpt-4").await;
    system_prompt(&cache, "gpt-4").await;
    assert_eq!((CONFIG_RUNS.get(), PROMPT_RUNS.get()), (2, 3));

    // Unknown events are still errors.
    assert!(invalidator.invalidate_on_event("model_deleted", &EventContext::new()).await.is_err());
}

#[tokio::test]
async fn a_readable_custom_key_works_with_key_rules() {
    let cache = memory_cache();
    let invalidator = CacheInvalidator::new(cache.clone());
    invalidator.register_invalidation_rule("user_updated", ["key:user_data:{user_id}"]).unwrap();
    user_by_id(&cache, 42, false).await;
    let key = user_by_id_cache_key(&cache, 42, false).unwrap();
    assert!(cache.get::<String>(&key).await.unwrap().is_some());
    invalidator
        .invalidate_on_event("user_updated", &EventContext::new().with("user_id", 42))
        .await
        .unwrap();
    assert_eq!(cache.get::<String>(&key).await.unwrap(), None);
}

// ----- stale_for ----------------------------------------------------------------------------

static QUOTE_RUNS: Runs = Runs(AtomicUsize::new(0));

#[cached(cache = cache, category = "quotes", ttl = Duration::from_millis(100), stale_for = 3600)]
async fn quote(
    #[cached(skip)] cache: &Cache,
    #[cached(skip)] up: bool,
    symbol: &str,
) -> Result<u32, FetchError> {
    QUOTE_RUNS.bump();
    if up {
        Ok(symbol.len() as u32)
    } else {
        Err(FetchError::Unavailable)
    }
}

#[tokio::test]
async fn an_expired_entry_is_served_when_the_body_fails_within_stale_for() {
    let cache = memory_cache();
    assert_eq!(quote(&cache, true, "AAPL").await, Ok(4));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Expired: the body runs, fails, and the stale value is served.
    assert_eq!(quote(&cache, false, "AAPL").await, Ok(4));
    assert_eq!(QUOTE_RUNS.get(), 2);
    assert_eq!(cache.stats().snapshot().stale_served, 1);
    // Nothing stale for another symbol: the error.
    assert_eq!(quote(&cache, false, "MSFT").await, Err(FetchError::Unavailable));
}

// ----- when the cache cannot help -----------------------------------------------------------

static DOWN_RUNS: Runs = Runs(AtomicUsize::new(0));

#[cached(cache = cache, category = "down")]
async fn through_a_failing_cache(
    #[cached(skip)] cache: &Cache,
    id: u64,
) -> Result<u64, FetchError> {
    DOWN_RUNS.bump();
    Ok(id * 2)
}

#[tokio::test]
async fn a_failing_cache_never_fails_the_call() {
    let memory = Arc::new(MokaStore::builder().build().unwrap());
    let faulty = FaultyStore::new(memory);
    let faults = faulty.control();
    // Strict: the cache returns its tiers' errors instead of skipping them.
    let cache =
        Cache::builder().strict(true).tier(Tier::new("memory", Arc::new(faulty))).build().unwrap();
    faults.fail_reads(true);
    assert_eq!(through_a_failing_cache(&cache, 1).await, Ok(2));
    assert_eq!(through_a_failing_cache(&cache, 1).await, Ok(2));
    assert_eq!(DOWN_RUNS.get(), 2);
    faults.fail_reads(false);
    faults.fail_writes(true);
    // The body ran, the store failed: the value is returned all the same.
    assert_eq!(through_a_failing_cache(&cache, 2).await, Ok(4));
    assert_eq!(DOWN_RUNS.get(), 3);
    faults.fail_writes(false);
    assert_eq!(through_a_failing_cache(&cache, 2).await, Ok(4));
    assert_eq!(through_a_failing_cache(&cache, 2).await, Ok(4));
    assert_eq!(DOWN_RUNS.get(), 4);
}

static ODD_RUNS: Runs = Runs(AtomicUsize::new(0));

/// A map with non-string keys cannot be a JSON object, so it cannot be part of a key.
#[cached(cache = cache, category = "odd")]
async fn odd_arguments(#[cached(skip)] cache: &Cache, pairs: HashMap<(u8, u8), u8>) -> usize {
    ODD_RUNS.bump();
    pairs.len()
}

#[tokio::test]
async fn an_argument_that_does_not_serialize_runs_the_body_uncached() {
    let cache = memory_cache();
    let pairs: HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
    assert_eq!(odd_arguments(&cache, pairs.clone()).await, 1);
    assert_eq!(odd_arguments(&cache, pairs.clone()).await, 1);
    assert_eq!(ODD_RUNS.get(), 2);
    let err = odd_arguments_cache_key(&cache, pairs).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidKey);
    assert!(err.to_string().contains("argument `pairs`"), "{err}");
}

// ----- the process-wide cache ---------------------------------------------------------------

static GLOBAL_RUNS: Runs = Runs(AtomicUsize::new(0));

/// The reference's first example, as it is: the process-wide cache.
#[cached(ttl = 3600, category = "model_responses")]
async fn model_response(model_type: &str, prompt: &str) -> String {
    GLOBAL_RUNS.bump();
    format!("{model_type}: {prompt}")
}

#[tokio::test]
async fn the_process_wide_cache_is_the_default() {
    // Not initialised: the body runs every time, and the companions say why.
    assert_eq!(model_response("gpt-4", "Hi").await, "gpt-4: Hi");
    assert_eq!(model_response("gpt-4", "Hi").await, "gpt-4: Hi");
    assert_eq!(GLOBAL_RUNS.get(), 2);
    let err = model_response_cache_key("gpt-4", "Hi").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
    assert_eq!(model_response_invalidate_all().await.unwrap_err().kind(), ErrorKind::Usage);

    aurelis_cache::install(memory_cache()).unwrap();
    assert_eq!(model_response("gpt-4", "Hi").await, "gpt-4: Hi");
    assert_eq!(model_response("gpt-4", "Hi").await, "gpt-4: Hi");
    assert_eq!(GLOBAL_RUNS.get(), 3);
    let global = aurelis_cache::get_cache_manager().unwrap();
    let key = model_response_cache_key("gpt-4", "Hi").unwrap();
    assert_eq!(global.get::<String>(&key).await.unwrap().as_deref(), Some("gpt-4: Hi"));
    model_response_invalidate_all().await.unwrap();
    assert_eq!(global.get::<String>(&key).await.unwrap(), None);
}
