use redis_cached::redis_cache;

#[redis_cache(ttl = 5)]
async fn f(id: u64) -> &'static str {
    if id == 0 { "zero" } else { "other" }
}

fn main() {}
