//! FileCacheManager: content addressing, damage detection, size cap with LRU eviction,
//! restart safety and names that would escape the cache directory.

use std::fs;
use std::path::Path;

use aurelis_cache::llm::FileCacheManager;
use aurelis_cache::ErrorKind;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test]
async fn files_are_stored_by_content_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let files = FileCacheManager::new(tmp.path().join("cache")).unwrap();
    // Larger than one copy block, so the hash is computed over several reads.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let a = write(tmp.path(), "a.bin", &big);
    let b = write(tmp.path(), "b.bin", &big);
    let ka = files.cache_file(&a, "blobs").await.unwrap();
    let kb = files.cache_file(&b, "blobs").await.unwrap();
    assert_eq!(ka, kb, "same content, same key");
    assert_eq!(ka, format!("blobs:{}", blake3::hash(&big).to_hex()));
    let path = files.get_cached_file(&ka).await.unwrap().unwrap();
    assert_eq!(fs::read(&path).unwrap(), big);
    assert!(path.starts_with(files.dir()));
    let stats = files.stats();
    assert_eq!((stats.stored, stats.entries, stats.bytes, stats.hits), (1, 1, big.len() as u64, 1));
    // Another category is another entry.
    let kc = files.cache_file(&a, "other").await.unwrap();
    assert_ne!(kc, ka);
    // No temporary file is left behind.
    assert_eq!(fs::read_dir(files.dir().join(".tmp")).unwrap().count(), 0);
    // Unknown content: a miss.
    let absent = format!("blobs:{}", blake3::hash(b"never cached").to_hex());
    assert!(files.get_cached_file(&absent).await.unwrap().is_none());
    assert_eq!(files.stats().misses, 1);
}

#[tokio::test]
async fn a_damaged_file_is_a_counted_miss_and_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let files = FileCacheManager::new(tmp.path().join("cache")).unwrap();
    let src = write(tmp.path(), "doc.txt", b"the original content");
    let key = files.cache_file(&src, "docs").await.unwrap();
    let path = files.get_cached_file(&key).await.unwrap().unwrap();
    // One flipped byte on disk.
    let mut bytes = fs::read(&path).unwrap();
    bytes[4] ^= 0x20;
    fs::write(&path, &bytes).unwrap();
    assert!(files.get_cached_file(&key).await.unwrap().is_none());
    assert!(!path.exists(), "the damaged file is removed");
    let stats = files.stats();
    assert_eq!((stats.corrupt, stats.misses, stats.entries), (1, 1, 0));
    // Caching the file again repairs the entry.
    assert_eq!(files.cache_file(&src, "docs").await.unwrap(), key);
    assert_eq!(
        fs::read(files.get_cached_file(&key).await.unwrap().unwrap()).unwrap(),
        b"the original content"
    );
    // Caching again over a damaged copy repairs it.
    fs::write(&path, b"the orIginal content").unwrap();
    assert_eq!(files.cache_file(&src, "docs").await.unwrap(), key);
    assert_eq!(fs::read(&path).unwrap(), b"the original content");
    // A truncated file is damaged too.
    fs::write(&path, b"the orig").unwrap();
    assert!(files.get_cached_file(&key).await.unwrap().is_none());
    assert_eq!(files.stats().corrupt, 2);
}

#[tokio::test]
async fn the_size_cap_evicts_the_least_recently_used() {
    let tmp = tempfile::tempdir().unwrap();
    let files = FileCacheManager::builder(tmp.path().join("cache")).max_bytes(250).build().unwrap();
    let mut keys = Vec::new();
    for name in ["a", "b"] {
        let src = write(tmp.path(), name, &[name.as_bytes()[0]; 100]);
        keys.push(files.cache_file(&src, "c").await.unwrap());
    }
    // Use `a`, so `b` is the least recently used.
    assert!(files.get_cached_file(&keys[0]).await.unwrap().is_some());
    let src = write(tmp.path(), "c", &[b'c'; 100]);
    keys.push(files.cache_file(&src, "c").await.unwrap());
    assert!(files.get_cached_file(&keys[1]).await.unwrap().is_none(), "b was evicted");
    assert!(files.get_cached_file(&keys[0]).await.unwrap().is_some());
    assert!(files.get_cached_file(&keys[2]).await.unwrap().is_some());
    let stats = files.stats();
    assert_eq!((stats.evictions, stats.entries, stats.bytes), (1, 2, 200));
    assert_eq!(fs::read_dir(files.dir().join("c")).unwrap().count(), 2, "evicted from disk too");
}

#[tokio::test]
async fn the_index_is_rebuilt_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let mut keys = Vec::new();
    {
        let files = FileCacheManager::new(&dir).unwrap();
        for (i, name) in ["old", "mid", "new"].iter().enumerate() {
            let src = write(tmp.path(), name, &[i as u8; 100]);
            keys.push(files.cache_file(&src, "c").await.unwrap());
            // Distinct modification times, oldest first.
            let path = files.get_cached_file(&keys[i]).await.unwrap().unwrap();
            let t = std::time::SystemTime::UNIX_EPOCH
                + std::time::Duration::from_secs(1_000_000 + i as u64);
            fs::File::options().write(true).open(path).unwrap().set_modified(t).unwrap();
        }
    }
    // A temporary file left by a crash mid-copy.
    fs::write(dir.join(".tmp").join("999-0.tmp"), b"half a fi").unwrap();
    let files = FileCacheManager::builder(&dir).max_bytes(250).build().unwrap();
    assert_eq!(fs::read_dir(dir.join(".tmp")).unwrap().count(), 0, "leftovers removed");
    // The cap holds at start: the oldest file went.
    let stats = files.stats();
    assert_eq!((stats.entries, stats.bytes, stats.evictions), (2, 200, 1));
    assert!(files.get_cached_file(&keys[0]).await.unwrap().is_none());
    assert!(files.get_cached_file(&keys[1]).await.unwrap().is_some());
    assert!(files.get_cached_file(&keys[2]).await.unwrap().is_some());
}

#[tokio::test]
async fn names_that_escape_the_cache_directory_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let files = FileCacheManager::new(tmp.path().join("cache")).unwrap();
    let src = write(tmp.path(), "x", b"x");
    for category in ["..", "../outside", "/etc", "a/b", "a\\b", "nul\0byte", ".tmp", ""] {
        let err = files.cache_file(&src, category).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidKey, "{category:?}");
        assert!(err.to_string().contains("refused"), "{err}");
    }
    let hash = blake3::hash(b"x").to_hex().to_string();
    for key in [
        format!("../c:{hash}"),
        format!("c:../{hash}"),
        format!("c:{hash}/../../x"),
        "/etc/passwd".to_string(),
        format!("c/d:{hash}"),
    ] {
        let err = files.get_cached_file(&key).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidKey, "{key:?}");
    }
    // Nothing was written outside the cache directory.
    let outside: Vec<_> =
        fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(outside.len(), 2, "{outside:?}"); // `x` and `cache`
}
