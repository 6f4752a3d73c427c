use std::collections::{BTreeMap, HashMap};

use redis_cached::redis_cache;

// A map keyed by something else than the batch's elements.
#[redis_cache(ttl = 60, batch = ids)]
async fn by_name(ids: Vec<u64>) -> HashMap<String, u64> {
    ids.into_iter().map(|id| (id.to_string(), id)).collect()
}

// Keys that are not `Serialize`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Sku(u64);

#[redis_cache(ttl = 60, batch = skus)]
async fn by_sku(skus: Vec<Sku>) -> BTreeMap<Sku, u64> {
    skus.into_iter().map(|sku| {
        let n = sku.0;
        (sku, n)
    }).collect()
}

fn main() {}
