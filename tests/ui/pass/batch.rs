use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use redis_cached::{Cache, redis_cache};

struct Db;

// Every collection, both maps, in and out of `Result`, with the other options a batch takes.
#[redis_cache(ttl = 60, batch = ids, skip(db))]
async fn owned(db: &Db, ids: Vec<u64>) -> HashMap<u64, String> {
    let _ = db;
    ids.into_iter().map(|id| (id, id.to_string())).collect()
}

#[redis_cache(ttl = "5m", none_ttl = 30, batch = ids, name = "shop::product")]
async fn sliced(ids: &[u64]) -> Result<BTreeMap<u64, String>, String> {
    Ok(ids.iter().map(|id| (*id, id.to_string())).collect())
}

#[redis_cache(ttl = 60, batch = ids, tags("product:{ids}", "region:{region}"), local = 100)]
async fn set(region: String, ids: HashSet<String>) -> HashMap<String, Vec<u8>> {
    ids.into_iter().map(|id| (id.clone(), region.clone().into_bytes())).collect()
}

#[redis_cache(
    ttl = |v: &u64| Duration::from_secs(*v + 1),
    unless = |v: &u64| *v == 0,
    condition = !ids.is_empty(),
    batch = ids
)]
async fn ordered(ids: &BTreeSet<u64>) -> BTreeMap<u64, u64> {
    ids.iter().map(|id| (*id, *id)).collect()
}

#[redis_cache(ttl = 60, stale = 60, refresh = "background", batch = ids, skip(db))]
async fn background(db: Arc<Db>, ids: Vec<u64>) -> Result<HashMap<u64, u64>, String> {
    let _ = db;
    Ok(ids.into_iter().map(|id| (id, id)).collect())
}

struct Repo {
    cache: Cache,
}

impl Repo {
    #[redis_cache(ttl = 60, batch = ids, cache = self.cache)]
    async fn items(&self, ids: Vec<u64>) -> HashMap<u64, u64> {
        ids.into_iter().map(|id| (id, id)).collect()
    }
}

async fn callers(repo: &Repo) {
    let _: HashMap<u64, String> = owned(&Db, vec![1, 2]).await;
    let _: Result<u64, redis_cached::CacheError> = owned_invalidate(vec![1]).await;
    let _ = owned_refresh(&Db, vec![1]).await;
    let _ = sliced(&[1, 2]).await;
    let _ = set("eu".into(), HashSet::from(["a".to_string()])).await;
    let _ = ordered(&BTreeSet::from([1])).await;
    let _ = background(Arc::new(Db), vec![1]).await;
    let _ = repo.items(vec![1]).await;
    let _ = repo.items_invalidate(vec![1]).await;
}

fn main() {
    let _ = callers;
}
