//! The process-wide instance (its own test binary: global state).

use aurelis_cache::{get_cache_manager, init, CacheConfig, ErrorKind};

#[tokio::test]
async fn init_once_then_get_anywhere() {
    let err = get_cache_manager().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
    assert!(err.to_string().contains("init"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let text = format!("[disk]\npath = {:?}\n", dir.path().join("db"));
    let config = CacheConfig::from_toml_str(&text).unwrap();
    let cache = init(&config).await.unwrap();
    cache.set(("user_data", "user123"), &"John".to_string()).await.unwrap();

    let same = get_cache_manager().unwrap();
    assert_eq!(
        same.get::<String>(("user_data", "user123")).await.unwrap().as_deref(),
        Some("John")
    );
    let err = init(&config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
}
