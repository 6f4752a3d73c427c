use redis_cached::redis_cache;

struct Id(u64);

#[redis_cache(ttl = 60, key = Id(id))]
async fn product(id: u64) -> u64 {
    id
}

fn main() {}
