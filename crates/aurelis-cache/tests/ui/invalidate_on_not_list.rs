use aurelis_cache::cached;

#[cached(invalidate_on = "model_config_updated")]
async fn answer(id: u64) -> u64 {
    id
}

fn main() {}
