use std::collections::HashMap;

use redis_cached::redis_cache;

// `batch` naming no parameter.
#[redis_cache(ttl = 60, batch = idz)]
async fn unknown(ids: Vec<u64>) -> HashMap<u64, u64> {
    ids.into_iter().map(|id| (id, id)).collect()
}

// Not a collection of keys.
#[redis_cache(ttl = 60, batch = id)]
async fn scalar(id: u64) -> HashMap<u64, u64> {
    HashMap::from([(id, id)])
}

// Not a map of the values found.
#[redis_cache(ttl = 60, batch = ids)]
async fn listed(ids: Vec<u64>) -> Vec<u64> {
    ids
}

// `batch` with `key`.
#[redis_cache(ttl = 60, batch = ids, key = 1u8)]
async fn keyed(ids: Vec<u64>) -> HashMap<u64, u64> {
    ids.into_iter().map(|id| (id, id)).collect()
}

// The keys left out of the key.
#[redis_cache(ttl = 60, batch = ids, skip(ids))]
async fn skipped(ids: Vec<u64>) -> HashMap<u64, u64> {
    ids.into_iter().map(|id| (id, id)).collect()
}

// Not a parameter name.
#[redis_cache(ttl = 60, batch = "ids")]
async fn quoted(ids: Vec<u64>) -> HashMap<u64, u64> {
    ids.into_iter().map(|id| (id, id)).collect()
}

fn main() {}
