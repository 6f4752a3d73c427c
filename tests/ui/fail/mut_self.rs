use redis_cached::redis_cache;

struct Counter {
    calls: u64,
}

impl Counter {
    #[redis_cache(ttl = 5)]
    async fn next(&mut self, id: u64) -> u64 {
        self.calls += 1;
        id + self.calls
    }
}

fn main() {}
