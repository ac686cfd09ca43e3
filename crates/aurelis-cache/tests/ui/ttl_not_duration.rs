use aurelis_cache::cached;

const ONE_HOUR: u64 = 3600;

// Only an integer literal is read as seconds; any other expression must be a `Duration`.
#[cached(ttl = ONE_HOUR)]
async fn answer(id: u64) -> u64 {
    id
}

fn main() {}
