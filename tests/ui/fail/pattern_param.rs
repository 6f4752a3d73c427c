use redis_cached::redis_cache;

#[redis_cache(ttl = 5)]
async fn f((a, b): (u32, u32)) -> u32 {
    a + b
}

fn main() {}
