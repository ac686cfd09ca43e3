use aurelis_cache::cached;

#[cached(tll = 60)]
async fn answer(id: u64) -> u64 {
    id
}

fn main() {}
