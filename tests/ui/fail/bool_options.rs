use redis_cached::redis_cache;

#[redis_cache(ttl = 5, early_refresh = 1)]
async fn number(id: u64) -> u64 {
    id
}

#[redis_cache(ttl = 5, lock = "no")]
async fn string(id: u64) -> u64 {
    id
}


#[redis_cache(ttl = 5, companions = yes)]
async fn ident(id: u64) -> u64 {
    id
}

fn main() {}
