#![deny(warnings)]

use redis_cached::redis_cache;

#[redis_cache(ttl = 300, stale = 60, early_refresh = false, jitter = 0.25, lock = false)]
async fn every_option(id: u64) -> Result<u64, String> {
    Ok(id)
}

#[redis_cache(ttl = 300, stale = 0, early_refresh = true, jitter = 0, lock = true)]
async fn explicit_defaults(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {
    let _ = every_option(1);
    let _ = explicit_defaults(1);
}
