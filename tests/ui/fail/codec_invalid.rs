use redis_cached::redis_cache;

// Not a codec at all.
#[redis_cache(ttl = 60, codec = "yaml")]
async fn unknown(id: u64) -> u64 {
    id
}

// A codec whose feature this build does not turn on (the ui tests build the default features).
#[redis_cache(ttl = 60, codec = "json")]
async fn not_enabled(id: u64) -> u64 {
    id
}

// Not a string.
#[redis_cache(ttl = 60, codec = json)]
async fn not_a_string(id: u64) -> u64 {
    id
}

fn main() {}
