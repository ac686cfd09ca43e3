use aurelis_cache::cached;

#[cached(ttl = 60)]
fn answer(id: u64) -> u64 {
    id
}

fn main() {}
