use redis_cached::redis_cache;

#[redis_cache(ttl = 5, ttl = 10)]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
