use redis_cached::redis_cache;

#[redis_cache(ttl = 60, tags("product:{idd}"))]
async fn unknown_name(id: u64) -> u64 {
    id
}

#[redis_cache(ttl = 60, tags("product {id}"))]
async fn space(id: u64) -> u64 {
    id
}

#[redis_cache(ttl = 60, tags("product:{id"))]
async fn unclosed(id: u64) -> u64 {
    id
}

#[redis_cache(ttl = 60, tags())]
async fn empty(id: u64) -> u64 {
    id
}

#[redis_cache(ttl = 60, tags(product))]
async fn not_a_string(id: u64) -> u64 {
    id
}

#[redis_cache(ttl = 60, tags = "product")]
async fn not_a_closure(id: u64) -> u64 {
    id
}

fn main() {}
