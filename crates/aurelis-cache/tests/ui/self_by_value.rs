use aurelis_cache::cached;

struct Service;

impl Service {
    #[cached(category = "service")]
    async fn answer(self, id: u64) -> u64 {
        id
    }
}

fn main() {}
