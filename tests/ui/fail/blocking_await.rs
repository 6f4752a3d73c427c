use redis_cached::redis_cache;

async fn load(id: u64) -> u64 {
    id
}

// A blocking function's body is not async: `.await` in it is rustc's error, on the user's code.
#[redis_cache(ttl = 60)]
fn product(id: u64) -> u64 {
    load(id).await
}

fn main() {}
