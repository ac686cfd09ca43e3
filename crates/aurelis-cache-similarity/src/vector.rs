//! Pluggable embeddings and an exact cosine index.

use std::collections::HashMap;
use std::fmt::Debug;

use async_trait::async_trait;
use aurelis_cache_core::Result;

use crate::lexical::Slot;
use crate::text::Analysis;

/// Turns texts into vectors. Implement it for a local model or a remote API.
///
/// Vectors need not be normalised: the index L2-normalises them, and every similarity
/// this crate reports for them is a cosine in `[-1, 1]`.
///
/// # Examples
///
/// ```
/// use aurelis_cache_similarity::{Embedder, HashEmbedder};
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let e = HashEmbedder::new(256);
/// let v = e.embed(&["How do I reset my password?", "how do i reset my password"]).await.unwrap();
/// assert_eq!(v.len(), 2);
/// assert_eq!(v[0], v[1]);
/// # });
/// ```
#[async_trait]
pub trait Embedder: Debug + Send + Sync + 'static {
    /// A stable name of the model (stored with persisted vectors; a different name means
    /// the stored vectors are recomputed).
    fn model_id(&self) -> &str;

    /// One vector per text, in order. Called with several texts at once where possible.
    async fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
}

/// A dependency-free baseline embedder: feature hashing of the canonical words and word
/// pairs of the normalised prompt. It is not semantic (it knows no synonyms); it exists for
/// tests, examples and as a floor to compare a real model against.
#[derive(Debug, Clone)]
pub struct HashEmbedder {
    dims: usize,
}

impl HashEmbedder {
    /// A hashing embedder with `dims` dimensions (at least 16).
    pub fn new(dims: usize) -> Self {
        HashEmbedder { dims: dims.max(16) }
    }

    fn embed_one(&self, text: &str) -> Vec<f32> {
        let a = Analysis::new(text);
        let keys: Vec<&str> = a.tokens().iter().map(|t| t.key.as_str()).collect();
        let mut v = vec![0f32; self.dims];
        let mut add = |feature: &str, weight: f32| {
            let h = blake3::hash(feature.as_bytes());
            let b = h.as_bytes();
            let i = u64::from_le_bytes(b[..8].try_into().expect("8 bytes")) as usize % self.dims;
            let sign = if b[8] & 1 == 0 { 1.0 } else { -1.0 };
            v[i] += sign * weight;
        };
        for k in &keys {
            add(k, 1.0);
        }
        for w in keys.windows(2) {
            add(&format!("{} {}", w[0], w[1]), 0.5);
        }
        v
    }
}

#[async_trait]
impl Embedder for HashEmbedder {
    fn model_id(&self) -> &str {
        "aurelis-hash-embedder-v1"
    }

    async fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        Ok(texts.iter().map(|t| self.embed_one(t)).collect())
    }
}

/// L2-normalises `v` in place; a zero vector stays zero.
pub(crate) fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Exact cosine search per scope over flat, normalised vectors.
#[derive(Debug, Default)]
pub(crate) struct VectorIndex {
    dims: Option<usize>,
    groups: HashMap<u64, Group>,
}

#[derive(Debug, Default)]
struct Group {
    slots: Vec<Slot>,
    data: Vec<f32>,
}

impl VectorIndex {
    pub(crate) fn insert(&mut self, scope: u64, slot: Slot, vector: &[f32]) -> Result<()> {
        let dims = *self.dims.get_or_insert(vector.len());
        if vector.len() != dims {
            return Err(aurelis_cache_core::Error::config(format!(
                "embedder returned {} dimensions, the index holds {dims}",
                vector.len()
            )));
        }
        let g = self.groups.entry(scope).or_default();
        g.slots.push(slot);
        g.data.extend_from_slice(vector);
        Ok(())
    }

    /// The `limit` best live slots by cosine, best first.
    pub(crate) fn search(
        &self,
        scope: u64,
        query: &[f32],
        limit: usize,
        live: impl Fn(Slot) -> bool,
    ) -> Vec<(Slot, f32)> {
        let Some(g) = self.groups.get(&scope) else { return Vec::new() };
        let Some(dims) = self.dims.filter(|d| *d == query.len()) else { return Vec::new() };
        let mut best: Vec<(Slot, f32)> = Vec::with_capacity(limit + 1);
        for (i, &slot) in g.slots.iter().enumerate() {
            let row = &g.data[i * dims..(i + 1) * dims];
            let cos: f32 = row.iter().zip(query).map(|(a, b)| a * b).sum();
            if best.len() == limit && best.last().is_some_and(|b| b.1 >= cos) {
                continue;
            }
            if !live(slot) {
                continue;
            }
            let at = best.partition_point(|b| b.1 >= cos);
            best.insert(at, (slot, cos));
            best.truncate(limit);
        }
        best
    }

    pub(crate) fn retain(&mut self, live: impl Fn(Slot) -> bool) {
        let Some(dims) = self.dims else { return };
        for g in self.groups.values_mut() {
            let mut slots = Vec::new();
            let mut data = Vec::new();
            for (i, &s) in g.slots.iter().enumerate() {
                if live(s) {
                    slots.push(s);
                    data.extend_from_slice(&g.data[i * dims..(i + 1) * dims]);
                }
            }
            g.slots = slots;
            g.data = data;
        }
        self.groups.retain(|_, g| !g.slots.is_empty());
    }

    pub(crate) fn approx_bytes(&self) -> usize {
        self.groups.values().map(|g| g.slots.capacity() * 4 + g.data.capacity() * 4 + 64).sum()
    }
}
