//! What a clean exit keeps: a real child process builds the process-wide cache (memory over
//! disk), writes 20,000 entries, calls `aurelis_cache::shutdown` and leaves through
//! `std::process::exit(0)` (the process-wide cache is a `static`, never dropped). The parent
//! then reopens the disk tier and counts every entry. Also: concurrent `init` calls build one
//! cache.

use std::process::Command;
use std::time::Duration;

use aurelis_cache::{CacheConfig, SledStore, Store};

const ENTRIES: usize = 20_000;
const CHILD_DIR: &str = "AURELIS_SHUTDOWN_TEST_DIR";

fn config(dir: &std::path::Path) -> CacheConfig {
    // A long flush interval, so that without `shutdown` most writes would still be in memory.
    let text = format!("[disk]\npath = {:?}\nflush_every_ms = 60000\n", dir.join("db"));
    CacheConfig::from_toml_str(&text).expect("config")
}

/// The child: runs only when the parent starts it (ignored otherwise, so it never passes as
/// a test that checks nothing).
#[tokio::test]
#[ignore = "run by `a_clean_exit_after_shutdown_keeps_every_write` in a child process"]
async fn child_writes_then_shuts_down() {
    let dir = std::env::var_os(CHILD_DIR).expect("started by the parent test");
    let cache = aurelis_cache::init(&config(std::path::Path::new(&dir))).await.expect("init");
    for i in 0..ENTRIES {
        cache.set(("doc", &format!("d{i}")), &i).await.expect("set");
    }
    assert_eq!(aurelis_cache::shutdown(Duration::from_secs(10)).await.expect("shutdown"), 0);
    std::process::exit(0);
}

#[test]
fn a_clean_exit_after_shutdown_keeps_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_writes_then_shuts_down", "--nocapture"])
        .env(CHILD_DIR, dir.path())
        .status()
        .expect("start the child");
    assert!(status.success(), "the child failed: {status}");
    let disk = SledStore::builder().path(dir.path().join("db")).build().expect("reopen");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let keys = aurelis_cache_core_keys();
        let mut found = 0;
        for i in 0..ENTRIES {
            if disk.get(&format!("{keys}doc:d{i}")).await.unwrap().is_some() {
                found += 1;
            }
        }
        assert_eq!(found, ENTRIES, "writes lost on a clean exit after shutdown");
    });
}

fn aurelis_cache_core_keys() -> String {
    aurelis_cache::KeyBuilder::default().prefix().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_init_calls_build_one_cache() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let calls = (0..4).map(|_| {
        let config = config.clone();
        tokio::spawn(async move { aurelis_cache::init(&config).await })
    });
    let results = futures::future::join_all(calls).await;
    let ok = results.iter().filter(|r| r.as_ref().unwrap().is_ok()).count();
    assert_eq!(ok, 1, "exactly one init may succeed");
    for r in results {
        if let Err(e) = r.unwrap() {
            assert_eq!(e.kind(), aurelis_cache::ErrorKind::Usage);
        }
    }
}
