use redis_cached::redis_cache;

#[redis_cache(ttl = 60, local_ttl = 5)]
async fn product(id: u64) -> u64 {
    id
}

fn main() {}
