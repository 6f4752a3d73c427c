use redis_cached::redis_cache;

struct Service {
    base: u64,
}

impl Service {
    #[redis_cache(ttl = 5, include_self)]
    async fn get(&self, id: u64) -> u64 {
        self.base + id
    }
}

fn main() {}
