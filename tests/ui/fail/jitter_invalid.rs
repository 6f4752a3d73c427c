use redis_cached::redis_cache;

#[redis_cache(ttl = 5, jitter = 0.9)]
async fn too_much(id: u64) -> u64 {
    id
}

#[redis_cache(ttl = 5, jitter = -0.1)]
async fn negative(id: u64) -> u64 {
    id
}

#[redis_cache(ttl = 5, jitter = "10%")]
async fn percent_string(id: u64) -> u64 {
    id
}

#[redis_cache(ttl = 5, jitter = lots)]
async fn not_a_literal(id: u64) -> u64 {
    id
}

fn main() {}
