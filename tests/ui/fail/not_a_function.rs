use redis_cached::redis_cache;

#[redis_cache(ttl = 5)]
struct Product {
    id: u64,
}

fn main() {}
