use redis_cached::redis_cache;

#[redis_cache(ttl = 5)]
async fn f(id: u64, seen: &mut Vec<u64>) -> u64 {
    seen.push(id);
    id
}

fn main() {}
