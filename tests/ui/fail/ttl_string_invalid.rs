use redis_cached::redis_cache;

#[redis_cache(ttl = "5 minutes")]
async fn spelled_out(id: u64) -> u64 {
    id
}

#[redis_cache(ttl = "30m1h")]
async fn smallest_first(id: u64) -> u64 {
    id
}

#[redis_cache(ttl = "0s")]
async fn zero(id: u64) -> u64 {
    id
}

#[redis_cache(ttl = 60, none_ttl = "1.5h")]
async fn fraction(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {}
