use redis_cached::redis_cache;

#[derive(serde::Serialize)]
struct Filter {
    region: Vec<String>,
}

#[redis_cache(ttl = 60, tags("region:{filter.region}"))]
async fn by_region(filter: Filter) -> u64 {
    filter.region.len() as u64
}

fn main() {}
