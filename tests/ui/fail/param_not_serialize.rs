use redis_cached::redis_cache;

struct Pool;

#[redis_cache(ttl = 5)]
async fn f(pool: &Pool, id: u64) -> u64 {
    let _ = pool;
    id
}

fn main() {}
