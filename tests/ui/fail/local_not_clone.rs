use redis_cached::redis_cache;

#[derive(serde::Serialize, serde::Deserialize)]
struct Report {
    total: u64,
}

#[redis_cache(ttl = 60, local = 1000)]
async fn report(id: u64) -> Report {
    Report { total: id }
}

fn main() {}
