use redis_cached::redis_cache;

/// Serializable but not deserializable: a hit could not be decoded.
#[derive(serde::Serialize)]
struct Report {
    total: u64,
}

#[redis_cache(ttl = 5)]
async fn report(id: u64) -> Report {
    Report { total: id }
}

fn main() {}
