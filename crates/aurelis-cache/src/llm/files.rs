//! [`FileCacheManager`]: a content-addressed file cache on local disk.
//!
//! A file is copied into `<dir>/<category>/<blake3 hex>.cache`, hashed while it is copied (in
//! 64 KiB blocks: a large file is never read into memory), written to a temporary file that is
//! synced and then renamed into place (a crash leaves no half-written entry under a real
//! name). A read hashes the cached file again: a damaged file is removed and counted as
//! `corrupt` (a miss). An optional size cap evicts the least recently used files; recency is
//! kept in the files' modification times, so the index rebuilt at the next start keeps it.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::SystemTime;

use aurelis_cache_core::{Error, ErrorKind, Result};
use parking_lot::Mutex;
use serde::Serialize;

const TMP_DIR: &str = ".tmp";
const SUFFIX: &str = ".cache";
const BLOCK: usize = 64 * 1024;
/// The longest category accepted, in bytes.
const MAX_CATEGORY_LEN: usize = 128;

#[derive(Debug)]
struct Entry {
    size: u64,
    tick: u64,
}

#[derive(Debug, Default)]
struct Index {
    entries: HashMap<String, Entry>,
    /// Recency order: tick -> key.
    order: BTreeMap<u64, String>,
    next_tick: u64,
    bytes: u64,
}

impl Index {
    fn touch(&mut self, key: &str, size: u64) {
        let tick = self.next_tick;
        self.next_tick += 1;
        if let Some(old) = self.entries.insert(key.to_owned(), Entry { size, tick }) {
            self.order.remove(&old.tick);
            self.bytes -= old.size;
        }
        self.order.insert(tick, key.to_owned());
        self.bytes += size;
    }

    fn remove(&mut self, key: &str) -> bool {
        match self.entries.remove(key) {
            Some(old) => {
                self.order.remove(&old.tick);
                self.bytes -= old.size;
                true
            }
            None => false,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    corrupt: AtomicU64,
    stored: AtomicU64,
    evictions: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    max_bytes: Option<u64>,
    index: Mutex<Index>,
    counters: Counters,
    tmp_seq: AtomicU64,
}

/// A content-addressed file cache (the reference's `FileCacheManager`).
///
/// # Examples
///
/// ```
/// use aurelis_cache::llm::FileCacheManager;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> aurelis_cache::Result<()> {
/// # let tmp = tempfile::tempdir().unwrap();
/// # let source = tmp.path().join("report.pdf");
/// # std::fs::write(&source, b"%PDF-1.7 ...").unwrap();
/// let files = FileCacheManager::builder(tmp.path().join("file_cache")).max_bytes(1 << 30).build()?;
/// let key = files.cache_file(&source, "documents").await?;
/// assert!(key.starts_with("documents:"));
/// let cached = files.get_cached_file(&key).await?.expect("cached");
/// assert_eq!(std::fs::read(cached).unwrap(), b"%PDF-1.7 ...");
/// // Names that would leave the cache directory are refused.
/// assert!(files.cache_file(&source, "../etc").await.is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct FileCacheManager {
    inner: Arc<Inner>,
}

/// Builds a [`FileCacheManager`].
#[derive(Clone, Debug)]
pub struct FileCacheBuilder {
    dir: PathBuf,
    max_bytes: Option<u64>,
}

impl FileCacheBuilder {
    /// The most bytes the cached files may take; the least recently used files are evicted
    /// past it. No cap by default.
    pub fn max_bytes(mut self, max: u64) -> Self {
        self.max_bytes = Some(max);
        self
    }

    /// Creates the directory if needed, removes leftover temporary files and rebuilds the
    /// index from the files present (recency from their modification times).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Backend`] when the directory cannot be created or listed,
    /// [`ErrorKind::Config`] for a zero size cap.
    pub fn build(self) -> Result<FileCacheManager> {
        if self.max_bytes == Some(0) {
            return Err(Error::config("file cache: max_bytes of zero keeps nothing"));
        }
        fs::create_dir_all(self.dir.join(TMP_DIR)).map_err(io_err("create the cache directory"))?;
        let index = rebuild(&self.dir)?;
        let inner = Arc::new(Inner {
            dir: self.dir,
            max_bytes: self.max_bytes,
            index: Mutex::new(index),
            counters: Counters::default(),
            tmp_seq: AtomicU64::new(0),
        });
        let manager = FileCacheManager { inner };
        manager.evict_over_cap(None);
        Ok(manager)
    }
}

/// Counters of a [`FileCacheManager`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FileCacheStats {
    /// Reads that found an intact file.
    pub hits: u64,
    /// Reads that found nothing (damaged files included).
    pub misses: u64,
    /// Damaged files found (and removed).
    pub corrupt: u64,
    /// Files copied in.
    pub stored: u64,
    /// Files evicted by the size cap.
    pub evictions: u64,
    /// Files in the cache.
    pub entries: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl FileCacheManager {
    /// A cache in `dir` without a size cap.
    ///
    /// # Errors
    ///
    /// As [`FileCacheBuilder::build`].
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        Self::builder(dir).build()
    }

    /// A builder for a cache in `dir`.
    pub fn builder(dir: impl Into<PathBuf>) -> FileCacheBuilder {
        FileCacheBuilder { dir: dir.into(), max_bytes: None }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Copies the file at `path` into the cache under `category` and returns its key,
    /// `category:<blake3 hex>`. Caching the same content again returns the same key (and
    /// replaces the cached copy atomically, which repairs one damaged on disk).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for a category that is empty, too long, or holds `..`, a path
    /// separator, NUL or anything but `[A-Za-z0-9._-]`; [`ErrorKind::Backend`] when the file
    /// cannot be read or the copy cannot be written.
    pub async fn cache_file(&self, path: impl AsRef<Path>, category: &str) -> Result<String> {
        validate_category(category)?;
        let path = path.as_ref().to_owned();
        let category = category.to_owned();
        let this = self.clone();
        blocking(move || this.cache_file_blocking(&path, &category)).await
    }

    /// The path of the cached file of `key`, after checking its content against the hash in
    /// the key; `None` when it is absent or damaged (a damaged file is removed and counted).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidKey`] for a key that is not `category:<64 hex digits>` with a valid
    /// category; [`ErrorKind::Backend`] for I/O errors other than a missing file.
    pub async fn get_cached_file(&self, key: &str) -> Result<Option<PathBuf>> {
        let (category, hash) = parse_key(key)?;
        let path = self.path_of(category, hash);
        let (key, hash) = (key.to_owned(), hash.to_owned());
        let this = self.clone();
        blocking(move || this.get_blocking(&key, &hash, &path)).await
    }

    /// Removes the cached file of `key`; whether there was one.
    ///
    /// # Errors
    ///
    /// As [`FileCacheManager::get_cached_file`].
    pub async fn remove(&self, key: &str) -> Result<bool> {
        let (category, hash) = parse_key(key)?;
        let path = self.path_of(category, hash);
        let had = self.inner.index.lock().remove(key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(had),
            Err(e) => Err(io_err("remove a cached file")(e)),
        }
    }

    /// The counters, with the current number of files and bytes.
    pub fn stats(&self) -> FileCacheStats {
        let c = &self.inner.counters;
        let index = self.inner.index.lock();
        FileCacheStats {
            hits: c.hits.load(Relaxed),
            misses: c.misses.load(Relaxed),
            corrupt: c.corrupt.load(Relaxed),
            stored: c.stored.load(Relaxed),
            evictions: c.evictions.load(Relaxed),
            entries: index.entries.len() as u64,
            bytes: index.bytes,
        }
    }

    fn path_of(&self, category: &str, hash: &str) -> PathBuf {
        self.inner.dir.join(category).join(format!("{hash}{SUFFIX}"))
    }

    fn cache_file_blocking(&self, source: &Path, category: &str) -> Result<String> {
        let mut input = File::open(source).map_err(io_err("open the file to cache"))?;
        let tmp = self.inner.dir.join(TMP_DIR).join(format!(
            "{}-{}.tmp",
            std::process::id(),
            self.inner.tmp_seq.fetch_add(1, Relaxed)
        ));
        let result = (|| {
            let mut out = File::options()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(io_err("create a temporary file"))?;
            let mut hasher = blake3::Hasher::new();
            let mut buf = vec![0u8; BLOCK];
            let mut size = 0u64;
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io_err("read the file to cache")(e)),
                };
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(io_err("write the cached copy"))?;
                size += n as u64;
            }
            out.sync_all().map_err(io_err("sync the cached copy"))?;
            Ok((hasher.finalize().to_hex().to_string(), size))
        })();
        let (hash, size) = match result {
            Ok(v) => v,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let key = format!("{category}:{hash}");
        let dest = self.path_of(category, &hash);
        let dir = dest.parent().expect("a cached file has a category directory");
        fs::create_dir_all(dir).map_err(io_err("create the category directory"))?;
        // Same content already cached: the fresh copy replaces it all the same (atomically),
        // which also repairs a copy damaged on disk.
        let existed = dest.exists();
        fs::rename(&tmp, &dest).map_err(io_err("move the cached copy into place"))?;
        // The rename itself is durable once the directory is synced.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        if !existed {
            self.inner.counters.stored.fetch_add(1, Relaxed);
        }
        self.inner.index.lock().touch(&key, size);
        self.evict_over_cap(Some(&key));
        Ok(key)
    }

    fn get_blocking(&self, key: &str, hash: &str, path: &Path) -> Result<Option<PathBuf>> {
        let c = &self.inner.counters;
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.inner.index.lock().remove(key);
                c.misses.fetch_add(1, Relaxed);
                return Ok(None);
            }
            Err(e) => return Err(io_err("open a cached file")(e)),
        };
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; BLOCK];
        let mut size = 0u64;
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    size += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err("read a cached file")(e)),
            }
        }
        if hasher.finalize().to_hex().as_str() != hash {
            tracing::warn!(key, "cached file is damaged: removed");
            drop(file);
            let _ = fs::remove_file(path);
            self.inner.index.lock().remove(key);
            c.corrupt.fetch_add(1, Relaxed);
            c.misses.fetch_add(1, Relaxed);
            return Ok(None);
        }
        // Recency survives a restart in the modification time.
        let _ =
            File::options().write(true).open(path).and_then(|f| f.set_modified(SystemTime::now()));
        self.inner.index.lock().touch(key, size);
        c.hits.fetch_add(1, Relaxed);
        Ok(Some(path.to_owned()))
    }

    /// Evicts the least recently used files until the cap holds (never `keep`, the file
    /// just cached, unless it alone is over the cap).
    fn evict_over_cap(&self, keep: Option<&str>) {
        let Some(max) = self.inner.max_bytes else { return };
        loop {
            let victim = {
                let mut index = self.inner.index.lock();
                if index.bytes <= max {
                    return;
                }
                let victim = index
                    .order
                    .values()
                    .find(|k| Some(k.as_str()) != keep)
                    .or_else(|| index.order.values().next())
                    .cloned();
                match victim {
                    Some(v) => {
                        index.remove(&v);
                        v
                    }
                    None => return,
                }
            };
            if let Ok((category, hash)) = parse_key(&victim) {
                let _ = fs::remove_file(self.path_of(category, hash));
            }
            self.inner.counters.evictions.fetch_add(1, Relaxed);
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::new(ErrorKind::Backend, "file cache task failed").with_source(e))?
}

fn io_err(what: &'static str) -> impl Fn(io::Error) -> Error {
    move |e| Error::backend(format!("file cache: cannot {what}")).with_tier("files").with_source(e)
}

/// Rebuilds the index from the files on disk, oldest first; removes leftover temporary files.
fn rebuild(dir: &Path) -> Result<Index> {
    if let Ok(tmp) = fs::read_dir(dir.join(TMP_DIR)) {
        for e in tmp.flatten() {
            let _ = fs::remove_file(e.path());
        }
    }
    let mut found: Vec<(SystemTime, String, u64)> = Vec::new();
    for category in fs::read_dir(dir).map_err(io_err("list the cache directory"))?.flatten() {
        let name = category.file_name();
        let Some(name) = name.to_str() else { continue };
        if validate_category(name).is_err() || !category.path().is_dir() {
            continue;
        }
        let Ok(files) = fs::read_dir(category.path()) else { continue };
        for file in files.flatten() {
            let file_name = file.file_name();
            let Some(hash) = file_name.to_str().and_then(|f| f.strip_suffix(SUFFIX)) else {
                continue;
            };
            if !is_hash(hash) {
                continue;
            }
            let Ok(meta) = file.metadata() else { continue };
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            found.push((modified, format!("{name}:{hash}"), meta.len()));
        }
    }
    found.sort();
    let mut index = Index::default();
    for (_, key, size) in found {
        index.touch(&key, size);
    }
    Ok(index)
}

fn validate_category(category: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::invalid_key(format!("file cache: category {category:?} is refused: {why}")))
    };
    if category.is_empty() {
        return bad("it is empty");
    }
    if category.len() > MAX_CATEGORY_LEN {
        return bad("it is longer than 128 bytes");
    }
    if category.contains("..") || category.starts_with('.') {
        return bad("it holds `..` or starts with `.` (it could leave the cache directory)");
    }
    if category.contains(['/', '\\', '\0', ':']) || Path::new(category).is_absolute() {
        return bad("it holds a path separator, `:` or NUL");
    }
    if let Some(c) =
        category.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return bad(&format!(
            "it holds {c:?}; only ASCII letters, digits, `_`, `-` and `.` are allowed"
        ));
    }
    Ok(())
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn parse_key(key: &str) -> Result<(&str, &str)> {
    let Some((category, hash)) = key.split_once(':') else {
        return Err(Error::invalid_key(format!(
            "file cache: key {key:?} is not `category:<blake3 hex>`"
        )));
    };
    validate_category(category)?;
    if !is_hash(hash) {
        return Err(Error::invalid_key(format!(
            "file cache: key {key:?} does not end in 64 lowercase hex digits"
        )));
    }
    Ok((category, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_names_are_refused() {
        for bad in ["", "..", "a/../b", "/etc", "a/b", "a\\b", "nul\0", ".hidden", "a:b", "é"] {
            assert_eq!(
                validate_category(bad).unwrap_err().kind(),
                ErrorKind::InvalidKey,
                "{bad:?}"
            );
        }
        validate_category("documents-2024_v1.0").unwrap();
        let hash = "a".repeat(64);
        assert!(parse_key(&format!("docs:{hash}")).is_ok());
        for bad in [
            format!("../x:{hash}"),
            format!("docs:{}", "A".repeat(64)),
            format!("docs:{hash}/../../x"),
            "docs".to_string(),
            format!("docs:{}", &hash[..63]),
        ] {
            assert!(parse_key(&bad).is_err(), "{bad:?}");
        }
    }
}
