//! The serde configuration of a [`SimilarityCache`](crate::SimilarityCache).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of a [`SimilarityCache`](crate::SimilarityCache); the builder's serde twin.
///
/// # Examples
///
/// ```
/// use aurelis_cache_similarity::SimilarityConfig;
///
/// let config: SimilarityConfig = serde_json::from_str(r#"{"threshold": 0.9, "shadow": true}"#).unwrap();
/// assert_eq!(config.threshold, 0.9);
/// assert!(config.shadow && config.guard);
/// assert_eq!(config.cosine_threshold, SimilarityConfig::default().cosine_threshold);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct SimilarityConfig {
    /// Lexical ratio in `[0, 1]` a candidate needs (default 0.85, as the reference).
    pub threshold: f64,
    /// Cosine similarity in `[-1, 1]` an embedding candidate needs (default 0.90). Only
    /// used when an embedder is set.
    pub cosine_threshold: f32,
    /// Run the guard on candidates (default `true`). Turning it off serves one-word edits
    /// such as negations; it exists to measure what the guard does.
    pub guard: bool,
    /// Strict guard (default `true`): a content word in one prompt only vetoes. `false`
    /// uses [`Guard::relaxed`](crate::Guard::relaxed), for a semantic embedder plus a verifier.
    pub strict_guard: bool,
    /// Lexical ratio in `[0, 1]` from which two prompts count as a minimal edit of each
    /// other (default 0.70). A candidate the embedder found at `cosine_threshold` or more
    /// and whose ratio is below this is a rewording: the relaxed guard judges it (content
    /// words may differ; negations, numbers, dates, names, opposites and role swaps may
    /// not). Without an embedder every candidate gets the configured guard.
    pub minimal_edit_ratio: f64,
    /// Shadow mode: look up and record would-be hits, serve nothing (default `false`).
    pub shadow: bool,
    /// Candidates taken from the lexical index and scored per lookup (default 64).
    pub max_candidates: usize,
    /// Candidates above the threshold that are explained and checked per lookup (default 5).
    pub max_checked: usize,
    /// Time the verifier gets per candidate; a timeout is a veto (default 2 s).
    #[serde(with = "millis")]
    pub verifier_timeout: Duration,
}

impl Default for SimilarityConfig {
    fn default() -> Self {
        SimilarityConfig {
            threshold: 0.85,
            cosine_threshold: 0.90,
            guard: true,
            strict_guard: true,
            minimal_edit_ratio: 0.70,
            shadow: false,
            max_candidates: 64,
            max_checked: 5,
            verifier_timeout: Duration::from_secs(2),
        }
    }
}

impl SimilarityConfig {
    pub(crate) fn validate(&self) -> aurelis_cache_core::Result<()> {
        use aurelis_cache_core::Error;
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(Error::config(format!(
                "similarity threshold {} is outside [0, 1]",
                self.threshold
            )));
        }
        if !(0.0..=1.0).contains(&self.minimal_edit_ratio) {
            return Err(Error::config(format!(
                "minimal edit ratio {} is outside [0, 1]",
                self.minimal_edit_ratio
            )));
        }
        if !(-1.0..=1.0).contains(&self.cosine_threshold) {
            return Err(Error::config(format!(
                "cosine threshold {} is outside [-1, 1]",
                self.cosine_threshold
            )));
        }
        if self.max_candidates == 0 || self.max_checked == 0 {
            return Err(Error::config("max_candidates and max_checked must be at least 1"));
        }
        Ok(())
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
