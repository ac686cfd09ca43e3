use aurelis_cache::cached;

#[cached(ttl = 60)]
async fn answer(id: u64, #[cached(ignore)] trace: String) -> u64 {
    let _ = trace;
    id
}

fn main() {}
