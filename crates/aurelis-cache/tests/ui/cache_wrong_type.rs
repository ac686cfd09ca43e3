use aurelis_cache::cached;

struct Settings {
    redis_url: String,
}

fn settings() -> Settings {
    Settings { redis_url: "redis://127.0.0.1".into() }
}

#[cached(cache = settings().redis_url)]
async fn answer(id: u64) -> u64 {
    id
}

fn main() {}
