use redis_cached::redis_cache;

#[redis_cache(version = 2)]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
