//! Inner attributes at the top of the body stay at the top of the generated body, where Rust
//! allows them, and still apply to the user's code.
#![deny(unused_variables)]

use redis_cached::redis_cache;

#[redis_cache(ttl = 60)]
async fn lenient(id: u64) -> u64 {
    #![allow(unused_variables)]
    let unused = 1;
    id
}

/// A doc comment and a lint attribute outside, an inner one inside.
#[allow(clippy::let_and_return)]
#[redis_cache(ttl = 60, name = "inner::documented")]
pub async fn documented(id: u64) -> Result<u64, String> {
    #![allow(unused_mut)]
    let mut value = id;
    Ok(value)
}

fn main() {
    let _ = lenient(1);
    let _ = documented(1);
}
