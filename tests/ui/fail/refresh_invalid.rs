use redis_cached::redis_cache;

#[redis_cache(ttl = 60, refresh = "eager")]
async fn eager(id: u64) -> u64 {
    id
}

#[redis_cache(ttl = 60, refresh = true)]
async fn boolean(id: u64) -> u64 {
    id
}

fn main() {}
