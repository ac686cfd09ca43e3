use aurelis_cache::cached;

#[cached(ttl = 0)]
async fn answer(id: u64) -> u64 {
    id
}

fn main() {}
