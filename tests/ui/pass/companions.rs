//! The companions exist for every shape of function the attribute accepts: `_refresh` with the
//! function's parameters, `_invalidate` with those the key is made of (not the skipped ones,
//! `self` only when the key or the cache needs it), `_stats()` with none.

use redis_cached::{Cache, CacheError, CallOutcome, FunctionStats, Outcome, redis_cache};
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

struct Pool;

struct Users;

impl Users {
    // The key is `id`: `_invalidate` needs neither `self` nor the pool.
    #[redis_cache(ttl = 5, skip(pool))]
    async fn user(&self, pool: &Pool, id: u64) -> String {
        let _ = pool;
        id.to_string()
    }

    // `key = ...` names what makes the key: only those parameters.
    #[redis_cache(ttl = 5, key = (tenant, id))]
    async fn scoped(&self, tenant: u32, pool: &Pool, id: u64) -> String {
        let _ = pool;
        format!("{tenant}/{id}")
    }
}

#[redis_cache(ttl = 5, skip(pool))]
async fn generic_pool<P: Sync>(pool: &P, id: u64) -> u64 {
    let _ = pool;
    id
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

async fn uses(repo: &Repo, users: &Users, cache: &Cache) {
    let removed: Result<bool, CacheError> = plain_invalidate(1, String::new()).await;
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
    let _: Result<bool, CacheError> = Users::user_invalidate(1).await;
    let _: String = users.user_refresh(&Pool, 1).await;
    // `_with_outcome` takes what the function takes, and adds how the call was answered.
    let _: (String, CallOutcome) = plain_with_outcome(1, String::new(), 0).await;
    let _: (u32, CallOutcome) = generic_with_outcome::<u32>(1).await;
    let _: (u64, CallOutcome) = any_key_with_outcome(7u8).await;
    let _: (Option<String>, CallOutcome) = repo.find_with_outcome(1).await;
    let (_, outcome): (String, CallOutcome) = users.user_with_outcome(&Pool, 1).await;
    let _: Outcome = outcome.outcome();
    let _: Result<bool, CacheError> = Users::scoped_invalidate(7, 1).await;
    // The pool's type is part of the key (a generic function's entries are per type).
    let _: Result<bool, CacheError> = generic_pool_invalidate::<Pool>(1).await;
    let stats: [FunctionStats; 4] = [
        plain_stats(),
        generic_stats(),
        Repo::find_stats(),
        Users::user_stats(),
    ];
    let _ = stats;
}

fn main() {
    let _ = uses;
}
