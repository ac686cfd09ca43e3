//! Typed get/set with params, a cached `None`, and invalidation by category and tag, on a
//! memory tier over a disk tier in a temporary directory.
//!
//! `cargo run -p aurelis-cache --example basic`

use std::sync::Arc;
use std::time::Duration;

use aurelis_cache::{Cache, MokaStore, Params, SetOptions, SledStore, Tier};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    name: String,
    role: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("aurelis-basic-{}", std::process::id()));
    let cache = Cache::builder()
        .tier(
            Tier::new("memory", Arc::new(MokaStore::builder().max_entries(1000).build()?))
                .ttl(Duration::from_secs(300)),
        )
        .tier(
            Tier::new("disk", Arc::new(SledStore::builder().path(&dir).build()?))
                .ttl(Duration::from_secs(86_400)),
        )
        .build()?;

    let john = User { name: "John".into(), role: "developer".into() };
    cache.set_with(("user_data", "user123"), &john, &SetOptions::new().tag("team:core")).await?;
    assert_eq!(cache.get::<User>(("user_data", "user123")).await?, Some(john));

    let page1 = Params::new().with("page", 1).with("limit", 10);
    cache.set(("search_results", "query123", Some(&page1)), &vec!["a", "b"]).await?;
    let hits: Option<Vec<String>> = cache.get(("search_results", "query123", Some(&page1))).await?;
    println!("search page 1: {hits:?}");

    // A cached "nothing found" is a hit, not a miss.
    cache.set(("user_data", "ghost"), &None::<User>).await?;
    println!("ghost: {:?}", cache.get::<Option<User>>(("user_data", "ghost")).await?);

    cache.invalidate_tag("team:core").await?;
    println!("after tag invalidation: {:?}", cache.get::<User>(("user_data", "user123")).await?);
    cache.invalidate_category("search_results").await?;
    println!(
        "search_results after invalidating the category: {:?}",
        cache.get::<Vec<String>>(("search_results", "rust")).await?
    );

    println!("{}", serde_json::to_string_pretty(&cache.stats_report().await)?);
    drop(cache);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
