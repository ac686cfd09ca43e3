use aurelis_cache::cached;

struct Client;

// `client` is not `Serialize`: it must be marked #[cached(skip)].
#[cached(ttl = 60)]
async fn fetch(client: &Client, id: u64) -> u64 {
    let _ = client;
    id
}

fn main() {}
