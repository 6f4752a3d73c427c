//! Free functions: visibility and attributes are preserved; every return shape; the options
//! `skip`, `version`, `name`, `none_ttl`; `_` and `mut` parameters; borrowed arguments; `?` and
//! early `return` in the body. `deny(warnings)`: the expansion must not warn in user code.
#![deny(warnings)]

use redis_cached::redis_cache;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct Product {
    id: u64,
    name: String,
}

#[derive(Debug)]
pub struct NotFound;

/// Not `Serialize`: only usable as a skipped parameter.
pub struct Pool;

impl Pool {
    fn name(&self) -> String {
        "pool".to_string()
    }
}

/// A doc comment; a plain struct return.
#[redis_cache(ttl = 60)]
pub async fn product(id: u64) -> Product {
    Product {
        id,
        name: format!("#{id}"),
    }
}

#[doc = "An explicit `#[doc]` attribute; `Result<T, E>` with an early `return`."]
#[redis_cache(ttl = 60, version = 3)]
pub(crate) async fn lookup(id: u64) -> Result<Product, NotFound> {
    if id == 0 {
        return Err(NotFound);
    }
    Ok(Product {
        id,
        name: String::new(),
    })
}

// Never called: this only compiles under `deny(warnings)` if the `allow` reaches the expansion.
#[allow(dead_code)]
#[redis_cache(ttl = 60)]
async fn never_called(id: u64) -> u64 {
    id
}

/// `std::io::Result<T>` and `?` inside the body; `&str` argument; a custom key name.
#[redis_cache(ttl = 60, name = "catalog::product")]
async fn parse_id(text: &str) -> std::io::Result<u64> {
    let id: u64 = text
        .trim()
        .parse()
        .map_err(|_| std::io::Error::other("not a number"))?;
    Ok(id)
}

/// `Option<T>` (only `Some` stored); `&[u8]` argument.
#[redis_cache(ttl = 60)]
async fn first_word(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    text.split_whitespace().next().map(str::to_string)
}

/// `Option<T>` with `none_ttl`: `None` is stored too.
#[redis_cache(ttl = 60, none_ttl = 5)]
async fn maybe_price(sku: String) -> Option<u64> {
    sku.strip_prefix("sku-")?.parse().ok()
}

/// `()` return (no `->`), `_` wildcard, `mut` parameter, early bare `return`.
#[redis_cache(ttl = 60)]
async fn touch(_: u32, mut count: u32) {
    count += 1;
    if count > 10 {
        return;
    }
    let _ = count;
}

/// Explicit `-> ()`.
#[allow(clippy::unused_unit)]
#[redis_cache(ttl = 60)]
async fn unit_explicit(id: u64) -> () {
    let _ = id;
}

/// `skip` of two non-`Serialize` parameters, one owned and one borrowed.
#[redis_cache(ttl = 60, skip(pool, audit), version = 2)]
async fn with_skips(pool: Pool, audit: &Pool, id: u64) -> String {
    format!("{}{}{id}", pool.name(), audit.name())
}

fn main() {
    // Referenced, never called: nothing here may reach Redis.
    let _ = product;
    let _ = lookup;
    let _ = parse_id;
    let _ = first_word;
    let _ = maybe_price;
    let _ = touch;
    let _ = unit_explicit;
    let _ = with_skips;
}
