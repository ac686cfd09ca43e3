//! A local BERT sentence embedder run with candle (feature `candle`, off by default).
//!
//! Loads a sentence-transformers model folder (`config.json`, `tokenizer.json`,
//! `model.safetensors`), e.g. all-MiniLM-L6-v2, and embeds with mean pooling over the
//! attention mask and L2 normalisation. The WordPiece tokenizer is implemented here from
//! `tokenizer.json` (lowercasing BERT tokenizers; accents are not stripped from non-ASCII
//! letters), which keeps the `tokenizers` crate and its native dependencies out of the build.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use aurelis_cache_core::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};

use crate::vector::Embedder;

/// Longest input in tokens, special tokens included (the model's tokenizer setting).
const MAX_TOKENS: usize = 128;

/// A BERT sentence embedder on the CPU.
///
/// # Examples
///
/// ```no_run
/// use aurelis_cache_similarity::{BertEmbedder, Embedder};
/// # let rt = tokio::runtime::Builder::new_multi_thread().build().unwrap();
/// # rt.block_on(async {
/// let model = BertEmbedder::load("models/all-MiniLM-L6-v2").unwrap();
/// let v = model.embed(&["How do I reset my password?"]).await.unwrap();
/// assert_eq!(v[0].len(), 384);
/// # });
/// ```
#[derive(Clone)]
pub struct BertEmbedder {
    inner: Arc<Inner>,
}

struct Inner {
    model: BertModel,
    tokenizer: WordPiece,
    id: String,
    device: Device,
}

impl std::fmt::Debug for BertEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertEmbedder").field("model", &self.inner.id).finish()
    }
}

fn model_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::config(format!("BERT embedder: {what}: {e}"))
}

impl BertEmbedder {
    /// Loads the model folder `dir` (`config.json`, `tokenizer.json`, `model.safetensors`).
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let read = |name: &str| {
            std::fs::read(dir.join(name))
                .map_err(|e| model_error(&format!("cannot read {}", dir.join(name).display()), e))
        };
        let config: Config = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| model_error("config.json", e))?;
        let tokenizer = WordPiece::from_tokenizer_json(&read("tokenizer.json")?)?;
        let device = Device::Cpu;
        let vb =
            VarBuilder::from_buffered_safetensors(read("model.safetensors")?, DType::F32, &device)
                .map_err(|e| model_error("model.safetensors", e))?;
        let model = BertModel::load(vb, &config).map_err(|e| model_error("weights", e))?;
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "bert".into());
        Ok(BertEmbedder { inner: Arc::new(Inner { model, tokenizer, id, device }) })
    }

    /// Embeds synchronously (what [`Embedder::embed`] runs on a blocking thread).
    pub fn embed_blocking(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.inner.embed(texts).map_err(|e| Error::backend(format!("BERT embedder: {e}")))
    }
}

impl Inner {
    fn embed(&self, texts: &[&str]) -> candle_core::Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encoded: Vec<Vec<u32>> = texts.iter().map(|t| self.tokenizer.encode(t)).collect();
        let len = encoded.iter().map(Vec::len).max().unwrap_or(2);
        let mut ids = Vec::with_capacity(texts.len() * len);
        let mut mask = Vec::with_capacity(texts.len() * len);
        for e in &encoded {
            ids.extend(e.iter().copied());
            ids.extend(std::iter::repeat_n(0u32, len - e.len()));
            mask.extend(std::iter::repeat_n(1u32, e.len()));
            mask.extend(std::iter::repeat_n(0u32, len - e.len()));
        }
        let n = texts.len();
        let ids = Tensor::from_vec(ids, (n, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device)?;
        let types = ids.zeros_like()?;
        let out = self.model.forward(&ids, &types, Some(&mask))?; // (n, len, hidden)
        let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (n, len, 1)
        let summed = out.broadcast_mul(&m)?.sum(1)?; // (n, hidden)
        let counts = m.sum(1)?; // (n, 1)
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
        let unit = mean.broadcast_div(&norm)?;
        unit.to_vec2::<f32>()
    }
}

#[async_trait]
impl Embedder for BertEmbedder {
    fn model_id(&self) -> &str {
        &self.inner.id
    }

    async fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let me = self.clone();
        let owned: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
        let job = move || {
            let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
            me.embed_blocking(&refs)
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle
                .spawn_blocking(job)
                .await
                .map_err(|e| Error::backend(format!("BERT embedder: {e}")))?,
            Err(_) => job(),
        }
    }
}

/// BERT's uncased WordPiece tokenizer: clean, lowercase, split on whitespace and
/// punctuation, greedy longest-match subwords, `[CLS] ... [SEP]`, truncated.
struct WordPiece {
    vocab: HashMap<String, u32>,
    unk: u32,
    cls: u32,
    sep: u32,
}

impl WordPiece {
    fn from_tokenizer_json(bytes: &[u8]) -> Result<Self> {
        let json: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| model_error("tokenizer.json", e))?;
        let vocab: HashMap<String, u32> = json["model"]["vocab"]
            .as_object()
            .ok_or_else(|| {
                model_error("tokenizer.json", "no model.vocab (not a WordPiece tokenizer)")
            })?
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), u32::try_from(v.as_u64()?).ok()?)))
            .collect();
        let id = |t: &str| {
            vocab
                .get(t)
                .copied()
                .ok_or_else(|| model_error("tokenizer.json", format!("no {t} token")))
        };
        let (unk, cls, sep) = (id("[UNK]")?, id("[CLS]")?, id("[SEP]")?);
        Ok(WordPiece { vocab, unk, cls, sep })
    }

    fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = vec![self.cls];
        'words: for word in pre_tokenize(text) {
            let chars: Vec<char> = word.chars().collect();
            if chars.len() > 100 {
                out.push(self.unk);
                continue;
            }
            let mut pieces = Vec::new();
            let mut start = 0;
            while start < chars.len() {
                let mut end = chars.len();
                let mut found = None;
                while start < end {
                    let mut piece: String = chars[start..end].iter().collect();
                    if start > 0 {
                        piece.insert_str(0, "##");
                    }
                    if let Some(&id) = self.vocab.get(&piece) {
                        found = Some(id);
                        break;
                    }
                    end -= 1;
                }
                match found {
                    Some(id) => pieces.push(id),
                    None => {
                        out.push(self.unk);
                        continue 'words;
                    }
                }
                start = end;
            }
            out.extend(pieces);
        }
        out.truncate(MAX_TOKENS - 1);
        out.push(self.sep);
        out
    }
}

fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || (!c.is_ascii() && !c.is_alphanumeric() && !c.is_whitespace())
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

fn pre_tokenize(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if c == '\0' || c == '\u{fffd}' || (c.is_control() && !c.is_whitespace()) {
            continue;
        }
        if c.is_whitespace() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
        } else if is_punctuation(c) || is_cjk(c) {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            words.push(c.to_lowercase().collect());
        } else {
            cur.extend(c.to_lowercase());
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wordpiece_splits_like_bert() {
        let vocab: HashMap<String, u32> =
            ["[UNK]", "[CLS]", "[SEP]", "how", "do", "i", "un", "##lock", "?", "my", "card"]
                .iter()
                .enumerate()
                .map(|(i, t)| (t.to_string(), i as u32))
                .collect();
        let wp = WordPiece { unk: 0, cls: 1, sep: 2, vocab };
        assert_eq!(wp.encode("How do I unlock my card?"), vec![1, 3, 4, 5, 6, 7, 9, 10, 8, 2]);
        assert_eq!(wp.encode("xyz"), vec![1, 0, 2]);
    }
}
