use redis_cached::redis_cache;

struct Report {
    total: u64,
}

#[redis_cache(ttl = 5)]
async fn f(id: u64) -> Report {
    Report { total: id }
}

fn main() {}
