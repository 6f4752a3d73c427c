use redis_cached::redis_cache;

// Nothing stale to serve.
#[redis_cache(ttl = 60, soft_timeout = "200ms")]
async fn without_stale(id: u64) -> u64 {
    id
}

// A background refresh makes no caller wait.
#[redis_cache(ttl = 60, stale = 30, refresh = "background", soft_timeout = "200ms")]
async fn with_background(id: u64) -> u64 {
    id
}

// A number without its unit.
#[redis_cache(ttl = 60, stale = 30, soft_timeout = 200)]
async fn without_unit(id: u64) -> u64 {
    id
}

// Units out of order.
#[redis_cache(ttl = 60, stale = 30, soft_timeout = "200ms1s")]
async fn out_of_order(id: u64) -> u64 {
    id
}

// Not a duration.
#[redis_cache(ttl = 60, stale = 30, soft_timeout = std::time::Duration::from_millis(5).as_millis())]
async fn not_a_duration(id: u64) -> u64 {
    id
}

fn main() {}
