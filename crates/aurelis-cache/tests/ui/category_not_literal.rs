use aurelis_cache::cached;

const CATEGORY: &str = "models";

#[cached(category = CATEGORY)]
async fn answer(id: u64) -> u64 {
    id
}

fn main() {}
