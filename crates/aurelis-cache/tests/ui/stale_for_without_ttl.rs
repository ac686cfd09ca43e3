use aurelis_cache::cached;

#[cached(stale_for = 600)]
async fn answer(id: u64) -> u64 {
    id
}

fn main() {}
