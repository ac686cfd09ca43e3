//! Event rules: registration checks, substitution, each target kind invalidating what it
//! should and nothing else, errors for unknown events and placeholders, config loading.

mod common;

use aurelis_cache::{
    Cache, CacheInvalidator, ErrorKind, EventContext, InvalidationRules, Params, ResolvedTarget,
    SetOptions,
};

async fn seeded() -> (common::Tiers, Cache) {
    let tiers = common::tiers();
    let cache = tiers.cache();
    cache.set(("user_data", "42"), &"ada").await.unwrap();
    cache.set(("user_data", "7"), &"grace").await.unwrap();
    cache.set(("user_data", "42x"), &"other").await.unwrap();
    cache.set(("session", "s1"), &"s").await.unwrap();
    cache.set(("profile", "42"), &"p42").await.unwrap();
    cache.set_with(("feed", "42"), &"f42", &SetOptions::new().tag("user:42")).await.unwrap();
    cache.set_with(("feed", "7"), &"f7", &SetOptions::new().tag("user:7")).await.unwrap();
    cache.set(("doc", "a:1"), &"d1").await.unwrap();
    cache.set(("doc", "a:2"), &"d2").await.unwrap();
    cache.set(("doc", "b:1"), &"d3").await.unwrap();
    let gpt = cache.keys().build_model_key("gpt-4o", "hi", &Params::new()).unwrap();
    let claude = cache.keys().build_model_key("claude", "hi", &Params::new()).unwrap();
    cache.set(&gpt, &"g").await.unwrap();
    cache.set(&claude, &"c").await.unwrap();
    (tiers, cache)
}

/// Every seeded entry that is still there, as "category/identifier" (models as "@model/name").
async fn present(cache: &Cache) -> Vec<String> {
    let mut out = Vec::new();
    for (c, i) in [
        ("user_data", "42"),
        ("user_data", "7"),
        ("user_data", "42x"),
        ("session", "s1"),
        ("profile", "42"),
        ("feed", "42"),
        ("feed", "7"),
        ("doc", "a:1"),
        ("doc", "a:2"),
        ("doc", "b:1"),
    ] {
        if cache.get::<String>((c, i)).await.unwrap().is_some() {
            out.push(format!("{c}/{i}"));
        }
    }
    for model in ["gpt-4o", "claude"] {
        let key = cache.keys().build_model_key(model, "hi", &Params::new()).unwrap();
        if cache.get::<String>(&key).await.unwrap().is_some() {
            out.push(format!("@model/{model}"));
        }
    }
    out
}

fn all_but(gone: &[&str]) -> Vec<String> {
    [
        "user_data/42",
        "user_data/7",
        "user_data/42x",
        "session/s1",
        "profile/42",
        "feed/42",
        "feed/7",
        "doc/a:1",
        "doc/a:2",
        "doc/b:1",
        "@model/gpt-4o",
        "@model/claude",
    ]
    .into_iter()
    .filter(|e| !gone.contains(e))
    .map(str::to_owned)
    .collect()
}

async fn run_rule(target: &str, ctx: EventContext) -> Vec<String> {
    let (_tiers, cache) = seeded().await;
    let inv = CacheInvalidator::new(cache.clone());
    inv.register_invalidation_rule("event", [target]).unwrap();
    inv.invalidate_on_event("event", &ctx).await.unwrap();
    present(&cache).await
}

#[tokio::test]
async fn each_target_kind_invalidates_what_it_names_and_nothing_else() {
    let user = || EventContext::new().with("user_id", 42);
    assert_eq!(run_rule("key:user_data:{user_id}", user()).await, all_but(&["user_data/42"]));
    assert_eq!(run_rule("category:session", user()).await, all_but(&["session/s1"]));
    assert_eq!(run_rule("tag:user:{user_id}", user()).await, all_but(&["feed/42"]));
    assert_eq!(
        run_rule("model:{model}", EventContext::new().with("model", "gpt-4o")).await,
        all_but(&["@model/gpt-4o"])
    );
    // A pattern over escaped identifiers: the substituted `a:` is escaped as stored.
    assert_eq!(
        run_rule("pattern:doc:{prefix}*", EventContext::new().with("prefix", "a:")).await,
        all_but(&["doc/a:1", "doc/a:2"])
    );
    // The reference's own example form.
    assert_eq!(run_rule("pattern:user_data:{user_id}", user()).await, all_but(&["user_data/42"]));
}

#[tokio::test]
async fn a_substituted_value_matches_literally_in_a_pattern() {
    // `*` from the context must not widen the pattern to every user.
    let gone =
        run_rule("pattern:user_data:{user_id}", EventContext::new().with("user_id", "*")).await;
    assert_eq!(gone, all_but(&[]));
}

#[tokio::test]
async fn several_targets_and_several_placeholders_apply_together() {
    let (_tiers, cache) = seeded().await;
    let inv = CacheInvalidator::new(cache.clone());
    inv.register_invalidation_rule(
        "user_updated",
        [
            "key:user_data:{user_id}",
            "key:profile:{user_id}",
            "tag:user:{user_id}",
            "key:doc:{a}:{b}",
        ],
    )
    .unwrap();
    let applied = inv
        .invalidate_on_event(
            "user_updated",
            &EventContext::new().with("user_id", 42).with("a", "b").with("b", 1),
        )
        .await
        .unwrap();
    assert_eq!(
        applied.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["key:user_data:42", "key:profile:42", "tag:user:42", "key:doc:b:1"]
    );
    assert_eq!(
        present(&cache).await,
        all_but(&["user_data/42", "profile/42", "feed/42", "doc/b:1"])
    );
}

#[tokio::test]
async fn unknown_event_is_an_error_naming_it_and_invalidates_nothing() {
    let (_tiers, cache) = seeded().await;
    let inv = CacheInvalidator::new(cache.clone());
    inv.register_invalidation_rule("user_updated", ["category:session"]).unwrap();
    let err = inv.invalidate_on_event("user_upated", &EventContext::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
    assert!(err.to_string().contains("user_upated"), "{err}");
    assert!(err.to_string().contains("user_updated"), "lists the known triggers: {err}");
    assert_eq!(present(&cache).await, all_but(&[]));
}

#[tokio::test]
async fn unknown_placeholder_is_an_error_and_no_target_is_applied() {
    let (_tiers, cache) = seeded().await;
    let inv = CacheInvalidator::new(cache.clone());
    // The first target resolves; the second needs `tenant`, missing: nothing may be applied.
    inv.register_invalidation_rule("e", ["category:session", "key:user_data:{tenant}"]).unwrap();
    let err =
        inv.invalidate_on_event("e", &EventContext::new().with("user_id", 42)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
    assert!(err.to_string().contains("{tenant}"), "{err}");
    assert!(err.to_string().contains("user_id"), "says what the context has: {err}");
    assert_eq!(present(&cache).await, all_but(&[]));
}

#[tokio::test]
async fn bad_rules_are_refused_at_registration_naming_the_target() {
    let tiers = common::tiers();
    let inv = CacheInvalidator::new(tiers.cache());
    for bad in [
        "categroy:session",
        "user_data:42",
        "key:user_data",
        "key::42",
        "category:",
        "category:has space",
        "category:a:b",
        "pattern:",
        "tag:",
        "tag:{unclosed",
        "tag:{}",
        "tag:x}",
        "model:{a b}",
    ] {
        let err = inv.register_invalidation_rule("e", [bad]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{bad}: {err}");
        assert!(err.to_string().contains(bad), "{bad}: {err}");
    }
    assert!(inv.register_invalidation_rule("e", Vec::<String>::new()).is_err());
    assert!(inv.register_invalidation_rule("", ["category:x"]).is_err());
    assert!(inv.triggers().is_empty(), "no bad rule was kept");
}

#[tokio::test]
async fn a_value_making_an_invalid_name_is_an_error_before_anything_is_applied() {
    let (_tiers, cache) = seeded().await;
    let inv = CacheInvalidator::new(cache.clone());
    inv.register_invalidation_rule("e", ["key:user_data:{id}", "category:{category}"]).unwrap();
    let err = inv
        .invalidate_on_event("e", &EventContext::new().with("id", 42).with("category", "a b"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidKey, "{err}");
    assert_eq!(present(&cache).await, all_but(&[]));
}

#[tokio::test]
async fn registering_again_replaces_the_rule_and_rules_can_be_removed() {
    let (_tiers, cache) = seeded().await;
    let inv = CacheInvalidator::new(cache.clone());
    inv.register_invalidation_rule("e", ["category:session"]).unwrap();
    inv.register_invalidation_rule("e", ["category:profile"]).unwrap();
    assert_eq!(inv.targets("e"), Some(vec!["category:profile".to_owned()]));
    inv.invalidate_on_event("e", &EventContext::new()).await.unwrap();
    assert_eq!(present(&cache).await, all_but(&["profile/42"]));
    assert!(inv.remove_rule("e"));
    assert!(inv.invalidate_on_event("e", &EventContext::new()).await.is_err());
}

#[tokio::test]
async fn context_from_a_serializable_event() {
    #[derive(serde::Serialize)]
    struct UserUpdated {
        user_id: u64,
        admin: bool,
        note: Option<String>,
    }
    let ctx = EventContext::from_serialize(&UserUpdated { user_id: 42, admin: true, note: None })
        .unwrap();
    assert_eq!(ctx.get("user_id"), Some("42"));
    assert_eq!(ctx.get("admin"), Some("true"));
    assert_eq!(ctx.get("note"), None, "null fields are left out");
    assert_eq!(run_rule("key:user_data:{user_id}", ctx).await, all_but(&["user_data/42"]));

    #[derive(serde::Serialize)]
    struct Nested {
        ids: Vec<u32>,
    }
    let err = EventContext::from_serialize(&Nested { ids: vec![1] }).unwrap_err();
    assert!(err.to_string().contains("ids"), "{err}");
    assert!(EventContext::from_serialize(&5u8).is_err());
    let from_map: EventContext = [("user_id", "42")].into_iter().collect();
    assert_eq!(from_map.get("user_id"), Some("42"));
}

#[tokio::test]
async fn rules_load_from_toml_config() {
    let rules = InvalidationRules::from_toml_str(
        r#"
        [rules]
        user_updated = ["key:user_data:{user_id}", "tag:user:{user_id}"]
        sessions_reset = ["category:session"]
        "#,
    )
    .unwrap();
    let (_tiers, cache) = seeded().await;
    let inv = CacheInvalidator::from_rules(cache.clone(), &rules).unwrap();
    assert_eq!(inv.triggers(), ["sessions_reset", "user_updated"]);
    assert_eq!(inv.placeholders("user_updated"), Some(vec!["user_id".to_owned()]));
    inv.invalidate_on_event("user_updated", &EventContext::new().with("user_id", 7)).await.unwrap();
    inv.invalidate_on_event("sessions_reset", &EventContext::new()).await.unwrap();
    assert_eq!(present(&cache).await, all_but(&["user_data/7", "feed/7", "session/s1"]));

    // Unknown fields and bad targets are errors naming them.
    let err = InvalidationRules::from_toml_str("[rulez]\na = [\"category:x\"]").unwrap_err();
    assert!(err.to_string().contains("rulez"), "{err}");
    let bad = InvalidationRules::from_toml_str("[rules]\na = [\"catgory:x\"]").unwrap();
    let err = CacheInvalidator::from_rules(cache, &bad).unwrap_err();
    assert!(err.to_string().contains("catgory:x"), "{err}");

    // And back: the struct serializes to the same TOML shape.
    let text = toml::to_string(&rules).unwrap();
    assert_eq!(InvalidationRules::from_toml_str(&text).unwrap(), rules);
}

#[tokio::test]
async fn resolve_previews_without_invalidating() {
    let (_tiers, cache) = seeded().await;
    let inv = CacheInvalidator::new(cache.clone());
    inv.register_invalidation_rule("e", ["key:user_data:{id}", "model:{m}"]).unwrap();
    let targets =
        inv.resolve("e", &EventContext::new().with("id", 42).with("m", "gpt-4o")).unwrap();
    assert_eq!(
        targets,
        [
            ResolvedTarget::Key { category: "user_data".into(), identifier: "42".into() },
            ResolvedTarget::Model { model: "gpt-4o".into() },
        ]
    );
    assert_eq!(present(&cache).await, all_but(&[]));
}

#[tokio::test]
async fn an_event_reaches_every_tier() {
    // The entry is in both tiers; after the event neither serves it, even the disk tier alone.
    let tiers = common::tiers();
    let cache = tiers.cache();
    cache.set(("user_data", "42"), &"ada").await.unwrap();
    let inv = CacheInvalidator::new(cache.clone());
    inv.register_invalidation_rule("e", ["key:user_data:{id}"]).unwrap();
    inv.invalidate_on_event("e", &EventContext::new().with("id", 42)).await.unwrap();
    drop(cache);
    let disk_only = Cache::builder()
        .tier(aurelis_cache::Tier::new("disk", tiers.disk.clone()))
        .build()
        .unwrap();
    assert_eq!(disk_only.get::<String>(("user_data", "42")).await.unwrap(), None);
}
