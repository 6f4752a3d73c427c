use std::time::Duration;

use redis_cached::redis_cache;

const PRODUCT_TTL: u64 = 300;

struct Settings {
    product_ttl: Duration,
}

fn settings() -> Settings {
    Settings {
        product_ttl: Duration::from_secs(60),
    }
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Token {
    expires_in: u64,
}

#[redis_cache(ttl = PRODUCT_TTL)]
async fn by_const(id: u64) -> u64 {
    id
}

#[redis_cache(ttl = settings().product_ttl, local = 10)]
async fn by_config(id: u64) -> u64 {
    id
}

#[redis_cache(ttl = |t: &Token| Duration::from_secs(t.expires_in))]
async fn token(id: u64) -> Result<Token, String> {
    Ok(Token { expires_in: id })
}

#[redis_cache(ttl = 60, unless = |page: &Vec<u64>| page.is_empty())]
async fn page(n: u64) -> Vec<u64> {
    (0..n).collect()
}

fn main() {
    let _ = (by_const(1), by_config(1), token(1), page(1));
}
