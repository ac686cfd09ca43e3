use aurelis_cache::cached;

#[cached(ttl = 60)]
async fn area((width, height): (u32, u32)) -> u32 {
    width * height
}

fn main() {}
