use aurelis_cache::cached;

const EVENT: &str = "model_config_updated";

#[cached(invalidate_on = [EVENT])]
async fn answer(id: u64) -> u64 {
    id
}

fn main() {}
