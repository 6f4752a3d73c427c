use redis_cached::redis_cache;

#[redis_cache(ttl = "300".to_string())]
async fn text_ttl(id: u64) -> u64 {
    id
}

#[redis_cache(ttl = 60, unless = true)]
async fn not_a_closure(id: u64) -> u64 {
    id
}

#[redis_cache(ttl = 60, unless = |v: &u64| v + 1)]
async fn not_bool(id: u64) -> u64 {
    id
}

#[redis_cache(ttl = |a: &u64, b: &u64| std::time::Duration::from_secs(a + b))]
async fn two_parameters(id: u64) -> u64 {
    id
}

fn main() {}
