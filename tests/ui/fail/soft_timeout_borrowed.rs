use redis_cached::redis_cache;

// The refresh a soft timeout leaves running outlives the call: it cannot borrow.
#[redis_cache(ttl = 60, stale = 30, soft_timeout = "200ms")]
async fn borrowed(name: &str) -> String {
    name.to_uppercase()
}

fn main() {}
