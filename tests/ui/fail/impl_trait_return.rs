use redis_cached::redis_cache;

#[redis_cache(ttl = 5)]
async fn f(n: u64) -> impl Iterator<Item = u64> {
    0..n
}

fn main() {}
