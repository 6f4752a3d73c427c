use redis_cached::redis_cache;

#[redis_cache(ttl = 5, none_ttl = 5)]
async fn f(id: u64) -> Result<u64, String> {
    Ok(id)
}

fn main() {}
