//! Envelope building, freshness and lifetime arithmetic: pure functions, no I/O.

use std::time::Duration;

use aurelis_cache_core::{Codec, Envelope, Error, ErrorKind, Result};
use serde::Serialize;

use crate::options::SetOptions;

/// Milliseconds of `d`, saturating instead of wrapping for durations past `u64::MAX` ms.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Encodes `value` with `codec` into an envelope created at `now_ms` with the options' TTL,
/// tags and stale window.
pub(crate) fn build_envelope<T: Serialize + ?Sized>(
    codec: Codec,
    max_value_bytes: usize,
    value: &T,
    options: &SetOptions,
    now_ms: u64,
) -> Result<Envelope> {
    options.check()?;
    let payload = codec.encode(value)?;
    if payload.len() > max_value_bytes {
        return Err(Error::new(
            ErrorKind::ValueTooLarge,
            format!(
                "encoded value is {} bytes, over the maximum of {max_value_bytes} (max_value_bytes)",
                payload.len()
            ),
        ));
    }
    let mut env = Envelope::new(codec, payload.into()).with_tags(options.tags().to_vec());
    env.created_at_ms = now_ms;
    let ttl =
        options.ttl_value().map(|ttl| jittered(ttl, options.ttl_jitter_value(), random_u64()));
    env.expires_at_ms = ttl.map(|ttl| now_ms.saturating_add(millis(ttl)));
    if let (Some(at), Some(stale)) = (env.expires_at_ms, options.stale_for_value()) {
        env.stale_until_ms = Some(at.saturating_add(millis(stale)));
    }
    Ok(env)
}

/// `ttl` plus an extra of up to `jitter`, chosen by `random`.
pub(crate) fn jittered(ttl: Duration, jitter: Option<Duration>, random: u64) -> Duration {
    match jitter.map(millis).filter(|&j| j > 0) {
        Some(j) => ttl.saturating_add(Duration::from_millis(random % (j + 1))),
        None => ttl,
    }
}

/// A cheap per-thread pseudo-random number (xorshift seeded from the clock and the thread),
/// for TTL jitter; not for anything that needs to be unpredictable.
pub(crate) fn random_u64() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
            h.finish() | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}

/// Whether an entry written at `created_at_ms` that expires at `expires_at_ms`, read at
/// `now_ms`, is past `fraction` of its lifetime (refresh-ahead).
pub(crate) fn due_for_refresh(
    created_at_ms: u64,
    expires_at_ms: Option<u64>,
    fraction: f64,
    now_ms: u64,
) -> bool {
    let Some(expires) = expires_at_ms else { return false };
    let life = expires.saturating_sub(created_at_ms) as f64;
    life > 0.0 && now_ms.saturating_sub(created_at_ms) as f64 >= life * fraction.clamp(0.0, 1.0)
}

/// How an entry stands at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// Before its expiry (or without one).
    Fresh,
    /// Expired, inside its stale window: served only when the loader fails.
    Stale,
    /// Expired and past any stale window.
    Dead,
}

/// Classifies `env` at `now_ms`.
pub(crate) fn freshness(env: &Envelope, now_ms: u64) -> Freshness {
    freshness_of(env.expires_at_ms, env.stale_until_ms, now_ms)
}

/// Classifies an entry expiring at `expires_at_ms`, stale until `stale_until_ms`, at `now_ms`.
pub(crate) fn freshness_of(
    expires_at_ms: Option<u64>,
    stale_until_ms: Option<u64>,
    now_ms: u64,
) -> Freshness {
    match expires_at_ms {
        None => Freshness::Fresh,
        Some(at) if now_ms < at => Freshness::Fresh,
        Some(_) if stale_until_ms.is_some_and(|until| now_ms < until) => Freshness::Stale,
        Some(_) => Freshness::Dead,
    }
}

/// How long a store should keep `env` from `now_ms`: until the end of its stale window, or
/// its expiry; `None` = no limit of its own. At least 1 ms.
pub(crate) fn store_lifetime(env: &Envelope, now_ms: u64) -> Option<Duration> {
    env.stale_until_ms
        .or(env.expires_at_ms)
        .map(|until| Duration::from_millis(until.saturating_sub(now_ms).max(1)))
}

/// The TTL a tier capped at `cap` gives an entry with `lifetime` left (`None` = forever).
pub(crate) fn cap_ttl(lifetime: Option<Duration>, cap: Option<Duration>) -> Option<Duration> {
    match (lifetime, cap) {
        (Some(l), Some(c)) => Some(l.min(c)),
        (l, c) => l.or(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(expires: Option<u64>, stale: Option<u64>) -> Envelope {
        let mut e = Envelope::new(Codec::Json, "1".into());
        e.created_at_ms = 1_000;
        e.expires_at_ms = expires;
        e.stale_until_ms = stale;
        e
    }

    #[test]
    fn freshness_windows() {
        assert_eq!(freshness(&env(None, None), u64::MAX), Freshness::Fresh);
        let e = env(Some(2_000), Some(3_000));
        assert_eq!(freshness(&e, 1_999), Freshness::Fresh);
        assert_eq!(freshness(&e, 2_000), Freshness::Stale);
        assert_eq!(freshness(&e, 2_999), Freshness::Stale);
        assert_eq!(freshness(&e, 3_000), Freshness::Dead);
        assert_eq!(freshness(&env(Some(2_000), None), 2_000), Freshness::Dead);
    }

    #[test]
    fn lifetimes_and_caps() {
        let e = env(Some(2_000), Some(5_000));
        assert_eq!(store_lifetime(&e, 1_000), Some(Duration::from_millis(4_000)));
        assert_eq!(
            store_lifetime(&env(Some(2_000), None), 1_500),
            Some(Duration::from_millis(500))
        );
        assert_eq!(store_lifetime(&env(Some(2_000), None), 9_000), Some(Duration::from_millis(1)));
        assert_eq!(store_lifetime(&env(None, None), 9_000), None);
        let s = Duration::from_secs;
        assert_eq!(cap_ttl(Some(s(10)), Some(s(5))), Some(s(5)));
        assert_eq!(cap_ttl(Some(s(3)), Some(s(5))), Some(s(3)));
        assert_eq!(cap_ttl(None, Some(s(5))), Some(s(5)));
        assert_eq!(cap_ttl(Some(s(3)), None), Some(s(3)));
        assert_eq!(cap_ttl(None, None), None);
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let ttl = Duration::from_secs(60);
        assert_eq!(jittered(ttl, None, 12345), ttl);
        assert_eq!(jittered(ttl, Some(Duration::ZERO), 12345), ttl);
        let j = Some(Duration::from_millis(1000));
        let values: std::collections::BTreeSet<Duration> =
            (0..200).map(|_| jittered(ttl, j, random_u64())).collect();
        assert!(values.iter().all(|v| *v >= ttl && *v <= ttl + Duration::from_millis(1000)));
        assert!(values.len() > 50, "jitter should spread TTLs: {} distinct", values.len());
    }

    #[test]
    fn refresh_ahead_is_due_after_the_fraction() {
        assert!(!due_for_refresh(1_000, None, 0.5, 9_999_999));
        assert!(!due_for_refresh(1_000, Some(11_000), 0.8, 8_999));
        assert!(due_for_refresh(1_000, Some(11_000), 0.8, 9_000));
        assert!(!due_for_refresh(1_000, Some(1_000), 0.8, 9_000));
    }

    #[test]
    fn huge_ttls_saturate_instead_of_wrapping() {
        let opts = SetOptions::new().ttl(Duration::MAX).stale_for(Duration::MAX);
        let e = build_envelope(Codec::Json, 1 << 20, &1u8, &opts, 1_000).unwrap();
        assert_eq!(e.expires_at_ms, Some(u64::MAX));
        assert_eq!(freshness(&e, u64::MAX - 1), Freshness::Fresh);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }

    #[test]
    fn too_large_values_are_refused_with_the_sizes() {
        let err =
            build_envelope(Codec::Json, 4, &"long string", &SetOptions::new(), 0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueTooLarge);
        assert!(err.message().contains("max_value_bytes"), "{err}");
    }
}
