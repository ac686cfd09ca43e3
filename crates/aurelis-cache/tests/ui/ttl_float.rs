use aurelis_cache::cached;

#[cached(ttl = 1.5)]
async fn answer(id: u64) -> u64 {
    id
}

fn main() {}
