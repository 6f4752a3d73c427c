use redis_cached::redis_cache;

#[redis_cache(ttl = 60, condition = id)]
async fn product(id: u64) -> u64 {
    id
}

fn main() {}
