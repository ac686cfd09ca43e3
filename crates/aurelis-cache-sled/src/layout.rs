//! How an entry is laid out in sled: an 8-byte little-endian expiry (milliseconds since the
//! Unix epoch, 0 = never), then the value bytes.

use std::time::Duration;

use aurelis_cache_core::envelope::now_ms;
use bytes::Bytes;
use sled::IVec;

/// Length of the expiry header in front of every stored value.
pub(crate) const HEADER_LEN: usize = 8;

/// The stored form of `value` expiring at `expires_at_ms` (0 = never).
pub(crate) fn encode(expires_at_ms: u64, value: &[u8]) -> Vec<u8> {
    let mut stored = Vec::with_capacity(HEADER_LEN + value.len());
    stored.extend_from_slice(&expires_at_ms.to_le_bytes());
    stored.extend_from_slice(value);
    stored
}

/// The expiry of a stored value, or `None` when it is too short to hold the header (corrupt).
#[inline]
pub(crate) fn expires_at(stored: &[u8]) -> Option<u64> {
    let header: [u8; HEADER_LEN] = stored.get(..HEADER_LEN)?.try_into().ok()?;
    Some(u64::from_le_bytes(header))
}

/// Whether an entry expiring at `expires_at_ms` is dead at `now_ms`.
#[inline]
pub(crate) fn is_expired(expires_at_ms: u64, now_ms: u64) -> bool {
    expires_at_ms != 0 && expires_at_ms <= now_ms
}

/// Whether a stored value is present, well-formed and not expired.
pub(crate) fn is_live(stored: &[u8], now_ms: u64) -> bool {
    expires_at(stored).is_some_and(|at| !is_expired(at, now_ms))
}

/// The expiry header for a write now with `ttl`: 0 for none, otherwise the deadline rounded
/// up to the next millisecond (never 0, so a zero TTL is expired at once).
pub(crate) fn expiry_for(ttl: Option<Duration>) -> u64 {
    match ttl {
        None => 0,
        Some(ttl) => {
            let ms = ttl.as_nanos().div_ceil(1_000_000);
            now_ms().saturating_add(u64::try_from(ms).unwrap_or(u64::MAX)).max(1)
        }
    }
}

/// The value part of a well-formed stored value (at least [`HEADER_LEN`] long), sharing its
/// memory instead of copying it.
#[inline]
pub(crate) fn value(stored: IVec) -> Bytes {
    Bytes::from_owner(ValuePart(stored))
}

/// A stored value seen without its header, so that `Bytes` can own it directly.
struct ValuePart(IVec);

impl AsRef<[u8]> for ValuePart {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.0.get(HEADER_LEN..).unwrap_or_default()
    }
}

/// What an entry counts for in the store's size: its key, its header and its value.
#[inline]
pub(crate) fn weight(key: &[u8], stored: &[u8]) -> u64 {
    key.len() as u64 + stored.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corrupt() {
        let stored = encode(42, b"abc");
        assert_eq!(stored.len(), 11);
        assert_eq!(expires_at(&stored), Some(42));
        assert_eq!(&value(IVec::from(stored))[..], b"abc");
        assert_eq!(expires_at(b"short"), None);
        assert!(!is_live(b"short", 0));
        assert_eq!(expires_at(&encode(0, b"")), Some(0));
    }

    #[test]
    fn expiry() {
        assert!(!is_expired(0, u64::MAX));
        assert!(is_expired(10, 10));
        assert!(!is_expired(11, 10));
        assert_eq!(expiry_for(None), 0);
        let now = now_ms();
        let at = expiry_for(Some(Duration::from_micros(1)));
        assert!(at > now && at <= now_ms() + 1);
        assert_eq!(expiry_for(Some(Duration::MAX)), u64::MAX);
    }
}
