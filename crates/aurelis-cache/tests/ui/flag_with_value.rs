use aurelis_cache::cached;

#[cached(cache_err = 1)]
async fn answer(id: u64) -> Result<u64, String> {
    Ok(id)
}

fn main() {}
