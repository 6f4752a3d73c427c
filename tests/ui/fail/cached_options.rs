// Options of the `cached` crate, as someone migrating writes them: each error names the
// equivalent here.
use redis_cached::redis_cache;

#[redis_cache(ttl = 60, size = 100)]
async fn sized(id: u64) -> u64 {
    id
}

#[redis_cache(time = 60)]
async fn timed(id: u64) -> u64 {
    id
}

#[redis_cache(ttl = 60, result = true)]
async fn fallible(id: u64) -> Result<u64, String> {
    Ok(id)
}

#[redis_cache(ttl = 60, key = "u64", convert = r#"{ id }"#)]
async fn keyed(id: u64, _request: String) -> u64 {
    id
}

fn main() {}
