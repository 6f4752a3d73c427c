use redis_cached::redis_cache;

struct Filter {
    tags: Vec<String>,
}

struct Search;

impl Search {
    #[redis_cache(ttl = 60)]
    async fn run(&self, query: String, filter: Filter) -> Vec<String> {
        let _ = query;
        filter.tags
    }
}

fn main() {}
