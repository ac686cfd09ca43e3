use aurelis_cache::cached;

#[cached(cache_err)]
async fn answer(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {}
