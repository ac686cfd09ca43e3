use aurelis_cache::cached;

struct ModelService;

impl ModelService {
    #[cached(ttl = 600, invalidate_on = ["model_config_updated"])]
    async fn get_model_config(&self, model_type: String) -> String {
        model_type
    }
}

fn main() {}
