//! Behaviour of the memory tier beyond the conformance suite: capacity, eviction and
//! expiration counters, oversized values, configuration.

use std::time::Duration;

use aurelis_cache_core::{Bytes, ErrorKind, Store};
use aurelis_cache_moka::{MokaConfig, MokaStore};

fn value(len: usize) -> Bytes {
    Bytes::from(vec![b'v'; len])
}

#[tokio::test]
async fn evictions_are_counted_when_over_capacity_by_entries() {
    let store = MokaStore::builder().max_entries(10).build().unwrap();
    for i in 0..100 {
        store.set(&format!("k{i}"), value(8), None).await.unwrap();
    }
    let len = store.len().await.unwrap();
    assert!(len <= 10, "{len} entries in a store of 10");
    assert!(len > 0);
    let counters = store.counters();
    assert_eq!(counters.evictions + len, 100, "every entry is either kept or counted as evicted");
    assert_eq!(counters.expirations, 0);
}

#[tokio::test]
async fn evictions_are_counted_when_over_capacity_by_bytes() {
    let store = MokaStore::builder().max_bytes(10_000).build().unwrap();
    for i in 0..100 {
        // 4-byte key + 996-byte value = 1000 bytes per entry.
        store.set(&format!("k{i:03}"), value(996), None).await.unwrap();
    }
    let len = store.len().await.unwrap();
    let size = store.size_bytes().await.unwrap();
    assert!(size <= 10_000, "size {size} above max_bytes");
    assert_eq!(size, len * 1000, "size_bytes weighs keys plus values");
    assert!(len <= 10);
    assert_eq!(store.counters().evictions + len, 100);
}

#[tokio::test]
async fn a_value_bigger_than_the_byte_capacity_is_refused() {
    let store = MokaStore::builder().name("hot").max_bytes(1000).build().unwrap();
    let err = store.set("big", value(2000), None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueTooLarge);
    assert_eq!(err.tier(), Some("hot"));
    assert!(err.message().contains("2003") && err.message().contains("1000"), "{err}");
    assert_eq!(store.get("big").await.unwrap(), None);

    // Exactly the capacity fits.
    store.set("fit", value(997), None).await.unwrap();
    assert_eq!(store.get("fit").await.unwrap(), Some(value(997)));

    // set_many refuses the whole batch up front.
    let err = store.set_many(&[("a", value(1)), ("b", value(5000))], None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueTooLarge);
    assert_eq!(store.get("a").await.unwrap(), None);
}

#[tokio::test]
async fn entry_capacity_does_not_limit_value_size() {
    let store = MokaStore::builder().max_entries(2).build().unwrap();
    store.set("big", value(1 << 20), None).await.unwrap();
    assert_eq!(store.get("big").await.unwrap().map(|v| v.len()), Some(1 << 20));
}

#[tokio::test]
async fn each_entry_has_its_own_ttl() {
    let store = MokaStore::builder().build().unwrap();
    store.set("short", value(1), Some(Duration::from_millis(150))).await.unwrap();
    store.set("long", value(2), Some(Duration::from_secs(30))).await.unwrap();
    store.set("forever", value(3), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(store.get("short").await.unwrap(), None);
    assert_eq!(store.get("long").await.unwrap(), Some(value(2)));
    assert_eq!(store.get("forever").await.unwrap(), Some(value(3)));
    // The read that found it expired removed it.
    assert_eq!(store.len().await.unwrap(), 2);
    assert_eq!(store.counters().expirations, 1);
    assert_eq!(store.counters().evictions, 0);
    assert_eq!(store.size_bytes().await.unwrap(), 4 + 2 + 7 + 3);
}

#[tokio::test]
async fn expired_entries_nobody_reads_are_swept() {
    let store = MokaStore::builder().sweep_interval(Duration::from_millis(50)).build().unwrap();
    for i in 0..100 {
        store.set(&format!("brief{i}"), value(1), Some(Duration::from_millis(20))).await.unwrap();
    }
    store.set("long", value(2), Some(Duration::from_secs(30))).await.unwrap();
    store.set("forever", value(3), None).await.unwrap();
    assert_eq!(store.len().await.unwrap(), 102);
    // None of the brief entries is read again: the sweep alone removes them.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.len().await.unwrap() != 2 {
        assert!(std::time::Instant::now() < deadline, "expired entries never swept");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.counters().expirations, 100);
    assert_eq!(store.size_bytes().await.unwrap(), 4 + 2 + 7 + 3);
    assert_eq!(store.get("long").await.unwrap(), Some(value(2)));
    assert_eq!(store.get("forever").await.unwrap(), Some(value(3)));
}

#[tokio::test]
async fn without_a_sweep_expired_entries_wait_for_a_read_or_a_purge() {
    let store = MokaStore::builder().sweep_interval(Duration::ZERO).build().unwrap();
    store.set("a", value(1), Some(Duration::from_millis(10))).await.unwrap();
    store.set("b", value(1), Some(Duration::from_millis(10))).await.unwrap();
    store.set("c", value(1), Some(Duration::from_millis(10))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(store.len().await.unwrap(), 3, "nothing swept");
    assert_eq!(store.get("a").await.unwrap(), None);
    assert_eq!(store.len().await.unwrap(), 2, "the read removed it");
    assert_eq!(store.purge_expired(), 2);
    assert_eq!(store.len().await.unwrap(), 0);
    assert_eq!(store.counters().expirations, 3);
    assert_eq!(store.size_bytes().await.unwrap(), 0);
}

#[tokio::test]
async fn set_if_absent_takes_the_place_of_an_expired_entry() {
    let store = MokaStore::builder().sweep_interval(Duration::ZERO).build().unwrap();
    store.set("k", value(1), Some(Duration::from_millis(10))).await.unwrap();
    assert!(!store.set_if_absent("k", value(2), None).await.unwrap(), "live: kept");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(store.set_if_absent("k", value(3), None).await.unwrap(), "expired: replaced");
    assert_eq!(store.get("k").await.unwrap(), Some(value(3)));
    assert_eq!(store.counters().expirations, 1);
    assert_eq!(store.size_bytes().await.unwrap(), 1 + 3);
}

#[tokio::test]
async fn an_overwrite_with_ttl_replaces_no_ttl() {
    let store = MokaStore::builder().build().unwrap();
    store.set("k", value(1), None).await.unwrap();
    store.set("k", value(2), Some(Duration::from_millis(100))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.get("k").await.unwrap(), None);
}

#[tokio::test]
async fn deleting_an_expired_entry_reports_nothing_removed() {
    let store = MokaStore::builder().build().unwrap();
    store.set("gone", value(1), Some(Duration::from_millis(50))).await.unwrap();
    store.set("p:gone", value(1), Some(Duration::from_millis(50))).await.unwrap();
    store.set("p:live", value(1), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!store.delete("gone").await.unwrap());
    assert_eq!(store.delete_prefix("p:").await.unwrap(), 1);
}

#[tokio::test]
async fn size_bytes_counts_keys_and_values() {
    for store in [
        MokaStore::builder().build().unwrap(),
        MokaStore::builder().max_bytes(1 << 20).build().unwrap(),
    ] {
        store.set("a", value(10), None).await.unwrap();
        store.set("bc", value(100), None).await.unwrap();
        store.set("a", value(20), None).await.unwrap();
        assert_eq!(store.size_bytes().await.unwrap(), 1 + 20 + 2 + 100, "{store:?}");
        store.clear().await.unwrap();
        assert_eq!(store.size_bytes().await.unwrap(), 0, "{store:?}");
    }
}

#[tokio::test]
async fn clones_share_entries_and_capabilities_are_memory_ones() {
    let store = MokaStore::builder().build().unwrap();
    let clone = store.clone();
    store.set("k", value(1), None).await.unwrap();
    assert_eq!(clone.get("k").await.unwrap(), Some(value(1)));
    let caps = store.capabilities();
    assert!(caps.in_process && caps.native_ttl);
    assert!(!caps.shared && !caps.persistent && !caps.ordered_scan);
}

#[test]
fn both_capacities_are_a_config_error_naming_both() {
    let err = MokaStore::builder().max_entries(10).max_bytes(1024).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("max_entries") && err.message().contains("max_bytes"), "{err}");

    let mut config = MokaConfig::default();
    config.max_entries = Some(10);
    config.max_bytes = Some(1024);
    assert_eq!(MokaStore::from_config(&config).unwrap_err().kind(), ErrorKind::Config);
}

#[test]
fn zero_capacity_and_empty_name_are_config_errors() {
    let err = MokaStore::builder().max_entries(0).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("max_entries"), "{err}");
    let err = MokaStore::builder().max_bytes(0).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("max_bytes"), "{err}");
    let err = MokaStore::builder().name("").build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[test]
fn config_round_trips_through_toml() {
    let text = r#"
        name = "l1"
        max_bytes = 1048576
    "#;
    let config: MokaConfig = toml::from_str(text).unwrap();
    assert_eq!(config.name, "l1");
    assert_eq!(config.max_bytes, Some(1 << 20));
    assert_eq!(config.max_entries, None);

    let written = toml::to_string(&config).unwrap();
    let again: MokaConfig = toml::from_str(&written).unwrap();
    assert_eq!(again, config);

    let empty: MokaConfig = toml::from_str("").unwrap();
    assert_eq!(empty, MokaConfig::default());
    assert_eq!(empty.name, "memory");

    let store = MokaStore::from_config(&config).unwrap();
    assert_eq!(store.name(), "l1");
}

#[tokio::test]
async fn size_in_bytes_is_kept_on_every_insert_and_removal_without_a_walk() {
    use aurelis_cache_core::{Bytes, Store};
    let store = aurelis_cache_moka::MokaStore::builder().max_entries(100).build().unwrap();
    store.set("k1", Bytes::from(vec![0u8; 10]), None).await.unwrap();
    store.set("k2", Bytes::from(vec![0u8; 30]), None).await.unwrap();
    assert_eq!(store.size_bytes().await.unwrap(), 2 + 10 + 2 + 30);
    store.set("k1", Bytes::from(vec![0u8; 20]), None).await.unwrap(); // replaced
    store.delete("k2").await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while store.size_bytes().await.unwrap() != 2 + 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "size never settled: {}",
            store.size_bytes().await.unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(store.set_if_absent("k3", Bytes::from(vec![0u8; 5]), None).await.unwrap());
    assert!(!store.set_if_absent("k3", Bytes::from(vec![0u8; 50]), None).await.unwrap());
    assert_eq!(store.size_bytes().await.unwrap(), 2 + 20 + 2 + 5);
}

#[tokio::test]
async fn decoded_values_are_kept_and_still_readable_as_bytes() {
    use aurelis_cache_core::{Bytes, Codec, EntryMeta, Envelope, Store, ValueEntry};
    let store = aurelis_cache_moka::MokaStore::builder().max_entries(100).build().unwrap();
    let values = store.as_value_store().expect("the memory tier keeps decoded values");
    let env = Envelope::new(Codec::MessagePack, Codec::MessagePack.encode("hello").unwrap().into());
    let raw = env.encode().unwrap();
    store.set("k", raw.clone(), None).await.unwrap();
    // Stored as bytes: no decoded value yet.
    assert!(values.get_value("k").is_none());
    let entry = ValueEntry::new("hello".to_string(), EntryMeta::of(&env), raw.len() as u32);
    // An upgrade against other bytes (a newer write) changes nothing.
    assert!(!values.upgrade("k", &Bytes::from(raw.to_vec()), entry.clone()));
    assert!(values.upgrade("k", &raw, entry.clone()));
    let got = values.get_value("k").expect("decoded now");
    assert_eq!(got.get::<String>().map(String::as_str), Some("hello"));
    // A byte reader still gets an envelope of the same value.
    let bytes = store.get("k").await.unwrap().expect("bytes");
    assert_eq!(Envelope::decode(bytes).unwrap().value::<String>().unwrap(), "hello");
    // Conditional write of a decoded value.
    assert!(!values.set_value_if_absent("k", entry.clone(), None).unwrap());
    assert!(values.set_value_if_absent("k2", entry.clone(), None).unwrap());
    assert!(store.delete("k2").await.unwrap());
    assert!(values.get_value("k2").is_none());
    // A byte-bounded store refuses a decoded value too large for it.
    let small = aurelis_cache_moka::MokaStore::builder().max_bytes(16).build().unwrap();
    let err = small.as_value_store().unwrap().set_value("k", entry, None).unwrap_err();
    assert_eq!(err.kind(), aurelis_cache_core::ErrorKind::ValueTooLarge);
}
