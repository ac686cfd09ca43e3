use aurelis_cache::cached;

#[cached(ttl = "1h")]
async fn answer(id: u64) -> u64 {
    id
}

fn main() {}
