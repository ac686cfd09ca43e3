use aurelis_cache::cached;

// Not `Clone` (and not `Serialize`/`Deserialize`): it cannot be cached.
struct Report {
    lines: Vec<String>,
}

#[cached(ttl = 60)]
async fn report(id: u64) -> Report {
    Report { lines: vec![id.to_string()] }
}

fn main() {}
