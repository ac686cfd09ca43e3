//! The store's clock: nanoseconds on the monotonic clock, read precisely when a deadline is
//! set and coarsely (the time of the last kernel tick, through the vDSO) when a read checks it.
//!
//! On Linux both are `CLOCK_MONOTONIC` (the coarse one as of the last tick, never ahead of the
//! precise one), so an entry is served for its whole TTL and at most one tick (1 to 4 ms)
//! longer. Elsewhere both read [`Instant`](std::time::Instant).

/// Now, precisely.
pub(crate) fn now_ns() -> u64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        read(rustix::time::ClockId::Monotonic)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        fallback::now_ns()
    }
}

/// Now as of the last kernel tick: never later than [`now_ns`], a few nanoseconds to read.
#[inline]
pub(crate) fn coarse_now_ns() -> u64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        read(rustix::time::ClockId::MonotonicCoarse)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        fallback::now_ns()
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[inline]
fn read(id: rustix::time::ClockId) -> u64 {
    let t = rustix::time::clock_gettime(id);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod fallback {
    use std::sync::OnceLock;
    use std::time::Instant;

    /// Nanoseconds since the first reading in this process.
    pub(crate) fn now_ns() -> u64 {
        static BASE: OnceLock<Instant> = OnceLock::new();
        let base = *BASE.get_or_init(Instant::now);
        u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_clock_is_never_ahead_and_follows_the_precise_one() {
        for _ in 0..1000 {
            let coarse = coarse_now_ns();
            let precise = now_ns();
            assert!(coarse <= precise, "coarse {coarse} ahead of precise {precise}");
            // A tick is at most 10 ms on every kernel configuration.
            assert!(precise - coarse < 50_000_000, "coarse {coarse} far behind {precise}");
        }
        let before = now_ns();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(coarse_now_ns() > before, "the coarse clock did not move in 20 ms");
    }
}
