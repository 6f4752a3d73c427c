use redis_cached::redis_cache;

// A syntax error inside the body is rustc's to report: one error, where it is.
#[redis_cache(ttl = 60)]
async fn broken(id: u64) -> u64 {
    let z = ;
    id
}

fn main() {}
