use aurelis_cache::cached;

#[cached(ttl = 60, category = "a", ttl = 120)]
async fn answer(id: u64) -> u64 {
    id
}

fn main() {}
