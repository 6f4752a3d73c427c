use redis_cached::redis_cache;

#[redis_cache(ttl = 5, version = 4294967296)]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
