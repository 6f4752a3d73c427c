use redis_cached::redis_cache;

// A mistake in the attribute: its error is the only one, though the function's companions are
// called below (they are still emitted, with the function, next to the error).
#[redis_cache(ttl = 0)]
async fn product(id: u64) -> String {
    format!("product {id}")
}

async fn callers() {
    let _ = product(1).await;
    let _ = product_invalidate(1).await;
    let _ = product_refresh(1).await;
}

fn main() {
    let _ = callers();
}
