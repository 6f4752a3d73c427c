use redis_cached::redis_cache;

#[redis_cache(ttl = 0)]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
