use redis_cached::redis_cache;

#[redis_cache(ttl = 60, none_ttl = |v: &u64| std::time::Duration::from_secs(*v))]
async fn lookup(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {}
