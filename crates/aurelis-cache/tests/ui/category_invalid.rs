use aurelis_cache::cached;

#[cached(category = "models:gpt")]
async fn answer(id: u64) -> u64 {
    id
}

fn main() {}
