use std::collections::{HashMap, HashSet};

use redis_cached::redis_cache;

// A `HashMap` argument serializes in its iteration order, which differs between processes.
#[redis_cache(ttl = 60)]
async fn priced(prices: HashMap<String, u64>) -> u64 {
    prices.values().sum()
}

// The same through a reference, and a `HashSet`.
#[redis_cache(ttl = 60)]
async fn tagged(tags: &HashSet<String>, limit: u32) -> u32 {
    tags.len() as u32 + limit
}

// Fine: left out of the key, or keyed on something canonical.
#[redis_cache(ttl = 60, skip(prices))]
async fn skipped(prices: HashMap<String, u64>, id: u64) -> u64 {
    prices.len() as u64 + id
}

#[redis_cache(ttl = 60, key = tags.len())]
async fn keyed(tags: HashSet<String>) -> usize {
    tags.len()
}

fn main() {}
