use redis_cached::redis_cache;

// Durations as strings, for `ttl`, `none_ttl` and `stale`.
#[redis_cache(ttl = "5m", stale = "1h30m")]
async fn product(id: u64) -> u64 {
    id
}

#[redis_cache(ttl = "1d", none_ttl = "90s")]
async fn maybe(id: u64) -> Option<u64> {
    Some(id)
}

#[redis_cache(ttl = "2h", stale = "0s")]
async fn report(id: u64) -> u64 {
    id
}

fn main() {
    let _ = (product(1), maybe(1), report(1));
}
