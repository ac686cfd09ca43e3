use aurelis_cache::cached;

#[cached(cache_none)]
async fn answer(id: u64) -> Result<u64, String> {
    Ok(id)
}

fn main() {}
