use redis_cached::redis_cache;

#[redis_cache(ttl = 5, skip(nope))]
async fn f(id: u64, name: String) -> u64 {
    id + name.len() as u64
}

fn main() {}
