use redis_cached::redis_cache;

static URL: &str = "redis://127.0.0.1/";

#[redis_cache(ttl = 5, cache = URL)]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
