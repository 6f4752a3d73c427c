use std::borrow::Cow;

use redis_cached::redis_cache;

#[redis_cache(ttl = 60, refresh = "background")]
async fn by_name(name: &str) -> u64 {
    name.len() as u64
}

#[redis_cache(ttl = 60, refresh = "background")]
async fn by_cow<'a>(name: Cow<'a, str>) -> u64 {
    name.len() as u64
}

struct Shop;

impl Shop {
    #[redis_cache(ttl = 60, refresh = "background")]
    async fn count(self: &std::sync::Arc<Self>, id: u64) -> u64 {
        id
    }
}

fn main() {}
