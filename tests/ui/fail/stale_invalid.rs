use redis_cached::redis_cache;

#[redis_cache(ttl = 5, stale = -5)]
async fn negative(id: u64) -> u64 {
    id
}

#[redis_cache(ttl = 5, stale = "60")]
async fn string(id: u64) -> u64 {
    id
}

#[redis_cache(ttl = 5, stale = 99999999999999999999999)]
async fn too_large(id: u64) -> u64 {
    id
}

fn main() {}
