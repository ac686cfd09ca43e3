//! What the model cache stores, and for how long: pure functions of the request and answer.

use std::time::Duration;

use aurelis_cache_core::{Error, Result};

use super::request::ModelRequest;
use super::response::{ModelResponse, ResponseStatus};

/// What to do with sampled requests (a temperature above zero, or none given).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SampledPolicy {
    /// Cache them like any other request, as the reference does: the first sample is served
    /// to everyone asking the same question.
    #[default]
    Cache,
    /// Neither look them up nor store them: every call asks the provider.
    Skip,
}

/// How a replay paces its chunks.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub enum Pacing {
    /// As fast as the caller reads (the default).
    #[default]
    Immediate,
    /// With the gaps the provider left between chunks.
    Original,
    /// With the original gaps multiplied by a factor (0.5: twice as fast).
    Scaled(f64),
}

/// The model cache's policy: TTL by status (3600 s for a complete answer, 300 s otherwise, as
/// the reference), whether truncated answers and sampled requests are cached, and how replays
/// are paced. Errors are never cached, whatever the policy.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aurelis_cache::llm::{CachePolicy, FinishReason, ModelRequest, ModelResponse, StoreDecision};
///
/// let policy = CachePolicy::new();
/// let req = ModelRequest::new("gpt-4o").temperature(0.0);
/// assert_eq!(
///     policy.decide(&req, &ModelResponse::success("gpt-4o", "hi")),
///     StoreDecision::Store(Duration::from_secs(3600))
/// );
/// let cut = ModelResponse::success("gpt-4o", "h").finish(FinishReason::Length);
/// assert!(matches!(policy.decide(&req, &cut), StoreDecision::Skip(_)));
/// let lenient = CachePolicy::new().cache_truncated(true);
/// assert_eq!(lenient.decide(&req, &cut), StoreDecision::Store(Duration::from_secs(300)));
/// let err = ModelResponse::error("gpt-4o", "rate limited");
/// assert!(matches!(lenient.decide(&req, &err), StoreDecision::Skip(_)));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct CachePolicy {
    success_ttl: Duration,
    other_ttl: Duration,
    cache_truncated: bool,
    sampled: SampledPolicy,
    pacing: Pacing,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            success_ttl: Duration::from_secs(3600),
            other_ttl: Duration::from_secs(300),
            cache_truncated: false,
            sampled: SampledPolicy::Cache,
            pacing: Pacing::Immediate,
        }
    }
}

/// What [`CachePolicy::decide`] says of an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreDecision {
    /// Store it for this long.
    Store(Duration),
    /// Do not store it, for this reason.
    Skip(&'static str),
}

impl CachePolicy {
    /// The reference's policy: 3600 s for complete answers, 300 s for other cacheable ones,
    /// truncated answers not cached, sampled requests cached, immediate replays.
    pub fn new() -> Self {
        Self::default()
    }

    /// The TTL of complete answers (3600 s by default).
    pub fn success_ttl(mut self, ttl: Duration) -> Self {
        self.success_ttl = ttl;
        self
    }

    /// The TTL of other cacheable answers, such as truncated ones when they are cached (300 s
    /// by default).
    pub fn other_ttl(mut self, ttl: Duration) -> Self {
        self.other_ttl = ttl;
        self
    }

    /// Whether answers cut short (`finish_reason` `length` or `content_filter`) are cached
    /// (for [`CachePolicy::other_ttl`]); `false` by default.
    pub fn cache_truncated(mut self, cache: bool) -> Self {
        self.cache_truncated = cache;
        self
    }

    /// What to do with sampled requests ([`SampledPolicy::Cache`] by default).
    pub fn sampled(mut self, sampled: SampledPolicy) -> Self {
        self.sampled = sampled;
        self
    }

    /// How replays of recorded streams are paced ([`Pacing::Immediate`] by default).
    pub fn pacing(mut self, pacing: Pacing) -> Self {
        self.pacing = pacing;
        self
    }

    /// The replay pacing.
    pub fn replay_pacing(&self) -> Pacing {
        self.pacing
    }

    /// The TTL of a complete answer.
    pub fn ttl_success(&self) -> Duration {
        self.success_ttl
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) for a zero TTL or a pacing factor that
    /// is negative or not finite.
    pub fn validate(&self) -> Result<()> {
        if self.success_ttl.is_zero() || self.other_ttl.is_zero() {
            return Err(Error::config("model cache policy: a TTL of zero stores nothing"));
        }
        if let Pacing::Scaled(f) = self.pacing {
            if !f.is_finite() || f < 0.0 {
                return Err(Error::config(format!(
                    "model cache policy: pacing factor {f} must be finite and >= 0"
                )));
            }
        }
        Ok(())
    }

    /// Whether `request` goes to the cache at all (sampled requests under
    /// [`SampledPolicy::Skip`] do not).
    pub fn uses_cache(&self, request: &ModelRequest) -> bool {
        !(self.sampled == SampledPolicy::Skip && request.is_sampled())
    }

    /// The TTL for an answer of `status` (`None` for errors, which are never stored).
    pub fn ttl_for(&self, status: ResponseStatus) -> Option<Duration> {
        match status {
            ResponseStatus::Success => Some(self.success_ttl),
            ResponseStatus::Incomplete => Some(self.other_ttl),
            ResponseStatus::Error => None,
        }
    }

    /// Whether and for how long `response` to `request` is stored.
    pub fn decide(&self, request: &ModelRequest, response: &ModelResponse) -> StoreDecision {
        if !self.uses_cache(request) {
            return StoreDecision::Skip("sampled request, and the policy skips sampled requests");
        }
        if response.status == ResponseStatus::Error {
            return StoreDecision::Skip("an error is never cached");
        }
        if response.is_truncated() {
            if !self.cache_truncated {
                return StoreDecision::Skip("truncated answer, and the policy skips them");
            }
            return StoreDecision::Store(self.other_ttl);
        }
        match self.ttl_for(response.status) {
            Some(ttl) => StoreDecision::Store(ttl),
            None => StoreDecision::Skip("an error is never cached"),
        }
    }

    /// Scales a recorded gap by the pacing (`None`: no wait).
    pub(crate) fn gap(&self, gap: Duration) -> Option<Duration> {
        match self.pacing {
            Pacing::Immediate => None,
            Pacing::Original => Some(gap),
            Pacing::Scaled(f) => Some(gap.mul_f64(f)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::FinishReason;

    #[test]
    fn sampled_requests_skip_only_when_asked() {
        let sampled = ModelRequest::new("m").temperature(0.8);
        let greedy = ModelRequest::new("m").temperature(0.0);
        let ok = ModelResponse::success("m", "x");
        assert!(matches!(CachePolicy::new().decide(&sampled, &ok), StoreDecision::Store(_)));
        let skip = CachePolicy::new().sampled(SampledPolicy::Skip);
        assert!(matches!(skip.decide(&sampled, &ok), StoreDecision::Skip(_)));
        assert!(matches!(skip.decide(&greedy, &ok), StoreDecision::Store(_)));
        assert!(!skip.uses_cache(&ModelRequest::new("m")), "no temperature: the default samples");
    }

    #[test]
    fn ttl_by_status_is_overridable() {
        let p = CachePolicy::new()
            .success_ttl(Duration::from_secs(10))
            .other_ttl(Duration::from_secs(5))
            .cache_truncated(true);
        let req = ModelRequest::new("m").temperature(0.0);
        assert_eq!(
            p.decide(&req, &ModelResponse::success("m", "x")),
            StoreDecision::Store(Duration::from_secs(10))
        );
        let filtered = ModelResponse::success("m", "x").finish(FinishReason::ContentFilter);
        assert_eq!(p.decide(&req, &filtered), StoreDecision::Store(Duration::from_secs(5)));
        assert_eq!(p.ttl_for(ResponseStatus::Error), None);
        assert!(CachePolicy::new().success_ttl(Duration::ZERO).validate().is_err());
        assert!(CachePolicy::new().pacing(Pacing::Scaled(-1.0)).validate().is_err());
    }
}
