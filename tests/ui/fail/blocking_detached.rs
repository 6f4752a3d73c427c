use redis_cached::redis_cache;

// A blocking function cannot refresh in a spawned task: its body would stall the I/O thread.
#[redis_cache(ttl = 60, stale = 30, refresh = "background")]
fn background(id: u64) -> u64 {
    id
}

#[redis_cache(ttl = 60, stale = 30, soft_timeout = "100ms")]
fn soft(id: u64) -> u64 {
    id
}

fn main() {
    // The companions of a function in error still exist, and block as it does.
    let _: u64 = background(1) + background_refresh(1);
    let _: Result<bool, redis_cached::CacheError> = soft_invalidate(1);
}
