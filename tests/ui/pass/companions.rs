//! The `_invalidate` and `_refresh` companions exist, with the function's parameters, for every
//! shape of function the attribute accepts.

use cache_runtime::{Cache, CacheError, redis_cache};
use serde::{Serialize, de::DeserializeOwned};

#[redis_cache(ttl = 5)]
async fn plain(id: u64, mut label: String, _: u8) -> String {
    label.push('!');
    format!("{id}{label}")
}

#[redis_cache(ttl = 5)]
async fn generic<T: Serialize + DeserializeOwned + Default + Send>(id: u64) -> T {
    let _ = id;
    T::default()
}

#[redis_cache(ttl = 5)]
async fn any_key(key: impl Serialize + Send) -> u64 {
    let _ = key;
    1
}

#[redis_cache(ttl = 5, skip(cache), cache = cache)]
async fn with_cache(cache: &Cache, id: u64) -> Result<u64, String> {
    Ok(id)
}

struct Repo {
    cache: Cache,
}

impl Repo {
    #[redis_cache(ttl = 5, cache = self.cache)]
    async fn find(&self, id: u64) -> Option<String> {
        Some(id.to_string())
    }
}

trait Lookup {
    async fn lookup(&self, id: u64) -> u64;
}

impl Lookup for Repo {
    // Trait impls cannot have extra methods.
    #[redis_cache(ttl = 5, cache = self.cache, companions = false)]
    async fn lookup(&self, id: u64) -> u64 {
        id
    }
}

async fn uses(repo: &Repo, cache: &Cache) {
    let removed: Result<bool, CacheError> = plain_invalidate(1, String::new(), 0).await;
    let _ = removed;
    let _: String = plain_refresh(1, String::new(), 0).await;
    let _: Result<bool, CacheError> = generic_invalidate::<u32>(1).await;
    let _: u32 = generic_refresh::<u32>(1).await;
    let _ = any_key_invalidate("k").await;
    let _: u64 = any_key_refresh(7u8).await;
    let _ = with_cache_invalidate(cache, 1).await;
    let _: Result<u64, String> = with_cache_refresh(cache, 1).await;
    let _ = repo.find_invalidate(1).await;
    let _: Option<String> = repo.find_refresh(1).await;
    let _ = repo.lookup(1).await;
}

fn main() {
    let _ = uses;
}
