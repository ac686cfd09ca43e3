//! The write-behind journal: one sled record per key with a queued write, flushed to disk
//! before the write is acknowledged, removed once the data store took that exact write.
//!
//! Record key: `u16` length of the category (big endian), the category, the identifier.
//! Record value: format version (1), sequence number (`u64` big endian), tag (0 delete,
//! 1 set), then the value as MessagePack for a set.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use aurelis_cache_core::{Codec, Error, ErrorKind, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::write_behind::Write;
use super::RecordKey;

const FORMAT: u8 = 1;
const TREE: &str = "aurelis-write-behind";

/// A queued write as the journal holds it.
pub(crate) struct Record<V> {
    pub(crate) key: RecordKey,
    pub(crate) seq: u64,
    pub(crate) write: Write<V>,
    pub(crate) raw: sled::IVec,
}

pub(crate) struct Journal {
    db: sled::Db,
    tree: sled::Tree,
    /// One flush at a time (group commit): concurrent `flush_async` calls each take a thread
    /// of sled's small I/O pool and wait there for a log write queued behind them, which
    /// deadlocks once the pool is full (seen with 16 concurrent writers).
    flush_lock: tokio::sync::Mutex<()>,
    /// Records inserted so far, and how many of them a finished flush covers.
    inserted: AtomicU64,
    flushed: AtomicU64,
}

fn journal_error(what: &str, err: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Backend, format!("write-behind journal: {what}"))
        .with_tier("journal")
        .with_source(err)
}

impl Journal {
    pub(crate) fn open(path: &Path) -> Result<Journal> {
        let db = sled::Config::new().path(path).open().map_err(|e| journal_error("open", e))?;
        let tree = db.open_tree(TREE).map_err(|e| journal_error("open", e))?;
        Ok(Journal {
            db,
            tree,
            flush_lock: tokio::sync::Mutex::new(()),
            inserted: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
        })
    }

    fn key_bytes(key: &RecordKey) -> Vec<u8> {
        let (c, i) = (key.category().as_bytes(), key.identifier().as_bytes());
        let mut out = Vec::with_capacity(2 + c.len() + i.len());
        out.extend_from_slice(&(c.len() as u16).to_be_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(i);
        out
    }

    fn parse_key(raw: &[u8]) -> Option<RecordKey> {
        let len = u16::from_be_bytes(raw.get(..2)?.try_into().ok()?) as usize;
        let category = std::str::from_utf8(raw.get(2..2 + len)?).ok()?;
        let identifier = std::str::from_utf8(raw.get(2 + len..)?).ok()?;
        Some(RecordKey::new(category, identifier))
    }

    /// Encodes a write (done before any lock is taken: it may fail on the value).
    pub(crate) fn encode<V: Serialize>(seq: u64, write: &Write<V>) -> Result<Vec<u8>> {
        let mut out = vec![FORMAT];
        out.extend_from_slice(&seq.to_be_bytes());
        match write {
            Write::Delete => out.push(0),
            Write::Set(v) => {
                out.push(1);
                out.extend_from_slice(&Codec::MessagePack.encode(v)?);
            }
        }
        Ok(out)
    }

    /// Writes the sequence number into a record made by [`Journal::encode`].
    pub(crate) fn set_seq(raw: &mut [u8], seq: u64) {
        raw[1..9].copy_from_slice(&seq.to_be_bytes());
    }

    /// Journals `raw` under `key` and makes it durable.
    pub(crate) async fn append(&self, key: &RecordKey, raw: &[u8]) -> Result<sled::IVec> {
        let raw = sled::IVec::from(raw);
        self.tree
            .insert(Self::key_bytes(key), raw.clone())
            .map_err(|e| journal_error("write", e))?;
        let mine = self.inserted.fetch_add(1, Ordering::SeqCst) + 1;
        self.flush_covering(mine).await.map_err(|e| journal_error("flush", e))?;
        Ok(raw)
    }

    /// Waits until a flush that started after insert number `mine` has finished: the first
    /// waiter flushes for everyone inserted before it started.
    async fn flush_covering(&self, mine: u64) -> sled::Result<()> {
        let _one_at_a_time = self.flush_lock.lock().await;
        if self.flushed.load(Ordering::SeqCst) >= mine {
            return Ok(());
        }
        let covered = self.inserted.load(Ordering::SeqCst);
        self.db.flush_async().await?;
        self.flushed.fetch_max(covered, Ordering::SeqCst);
        Ok(())
    }

    /// Removes `key`'s record if it is still `raw` (a newer write keeps its own record).
    pub(crate) fn remove(&self, key: &RecordKey, raw: &sled::IVec) {
        let removed =
            self.tree.compare_and_swap(Self::key_bytes(key), Some(raw), None::<sled::IVec>);
        if let Err(e) = removed {
            tracing::warn!(record = %key, error = %e, "write-behind journal: remove failed");
        }
    }

    /// Every journaled write, for replay.
    pub(crate) fn records<V: DeserializeOwned>(&self) -> Result<Vec<Record<V>>> {
        let mut out = Vec::new();
        for item in self.tree.iter() {
            let (k, raw) = item.map_err(|e| journal_error("read", e))?;
            let bad = || Error::new(ErrorKind::Codec, "write-behind journal: malformed record");
            let key = Self::parse_key(&k).ok_or_else(bad)?;
            if raw.len() < 10 || raw[0] != FORMAT {
                return Err(bad());
            }
            let seq = u64::from_be_bytes(raw[1..9].try_into().map_err(|_| bad())?);
            let write = match raw[9] {
                0 => Write::Delete,
                1 => Write::Set(Codec::MessagePack.decode(&raw[10..])?),
                _ => return Err(bad()),
            };
            out.push(Record { key, seq, write, raw });
        }
        Ok(out)
    }

    /// Makes removals durable (best effort; a removal lost to a crash means one more write).
    pub(crate) async fn flush(&self) {
        let _one_at_a_time = self.flush_lock.lock().await;
        if let Err(e) = self.db.flush_async().await {
            tracing::warn!(error = %e, "write-behind journal: flush failed");
        }
    }
}
