use redis_cached::redis_cache;

#[redis_cache(tll = 5)]
async fn f(id: u64) -> u64 {
    id
}

fn main() {}
