use aurelis_cache::cached;

#[cached(tags = "users")]
async fn answer(id: u64) -> u64 {
    id
}

fn main() {}
