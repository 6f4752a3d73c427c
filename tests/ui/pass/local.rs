use redis_cached::redis_cache;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Product {
    id: u64,
}

#[derive(Debug)]
struct NotFound;

// `local` on each return shape, with and without `local_ttl`.
#[redis_cache(ttl = 60, local = 1000)]
async fn plain(id: u64) -> Product {
    Product { id }
}

#[redis_cache(ttl = 60, local = 10_000, local_ttl = 5)]
async fn fallible(id: u64) -> Result<Product, NotFound> {
    if id == 0 { Err(NotFound) } else { Ok(Product { id }) }
}

#[redis_cache(ttl = 60, none_ttl = 10, local = 10)]
async fn maybe(id: u64) -> Option<Product> {
    (id > 0).then_some(Product { id })
}

// The error type need not be Clone: only the stored value is copied.
#[redis_cache(ttl = 60, local = 10)]
async fn text(id: u64) -> Result<String, std::io::Error> {
    Ok(id.to_string())
}

fn main() {
    let _ = (plain(1), fallible(1), maybe(1), text(1));
    let _ = (plain_invalidate(1), fallible_refresh(1));
}
