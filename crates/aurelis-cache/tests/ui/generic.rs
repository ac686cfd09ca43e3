use aurelis_cache::cached;

#[cached(ttl = 60)]
async fn answer<T: serde::Serialize>(id: T) -> u64 {
    let _ = id;
    1
}

fn main() {}
