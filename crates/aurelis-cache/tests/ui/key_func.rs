use aurelis_cache::cached;

// The reference's `key_func` is `key` here.
#[cached(key_func = format!("user:{user_id}"))]
async fn get_user_data(user_id: u64) -> String {
    user_id.to_string()
}

fn main() {}
