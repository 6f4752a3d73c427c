use redis_cached::redis_cache;

#[redis_cache(ttl = 60, local = 0)]
async fn none_kept(id: u64) -> u64 {
    id
}

#[redis_cache(ttl = 60, local = -5)]
async fn negative(id: u64) -> u64 {
    id
}

#[redis_cache(ttl = 60, local = 100, local_ttl = 0)]
async fn zero_local_ttl(id: u64) -> u64 {
    id
}

fn main() {}
