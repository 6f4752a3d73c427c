#![deny(warnings)]

use std::collections::HashMap;
use std::time::Duration;

use redis_cached::{CacheError, CallOutcome, FunctionStats, redis_cache};

struct Db;

impl Db {
    fn load(&self, id: u64) -> Result<String, std::io::Error> {
        Ok(id.to_string())
    }
}

/// A blocking function takes the same options as an `async` one (but a detached refresh), and
/// its companions block too.
#[redis_cache(
    ttl = "5m",
    stale = 60,
    none_ttl = 30,
    local = 100,
    local_ttl = 10,
    tags("product:{id}"),
    condition = id != 0,
    skip(db)
)]
fn product(db: &Db, id: u64) -> Option<String> {
    db.load(id).ok()
}

#[redis_cache(ttl = |v: &String| Duration::from_secs(v.len() as u64), unless = |v: &String| v.is_empty(), lock = false)]
fn name(id: u64) -> Result<String, std::io::Error> {
    Ok(id.to_string())
}

#[redis_cache(ttl = 60, batch = ids)]
fn products(ids: Vec<u64>) -> HashMap<u64, String> {
    ids.into_iter().map(|id| (id, id.to_string())).collect()
}

struct Repo {
    db: Db,
}

impl Repo {
    #[redis_cache(ttl = 60, key = id)]
    fn find(&self, id: u64) -> Result<String, std::io::Error> {
        self.db.load(id)
    }
}

/// Type-checks the calls without making them: a pass case must not reach for a Redis.
#[allow(dead_code)]
fn calls() {
    let db = Db;
    let _: Option<String> = product(&db, 1);
    let _: (Option<String>, CallOutcome) = product_with_outcome(&db, 1);
    let _: Result<bool, CacheError> = product_invalidate(1);
    let _: Option<String> = product_refresh(&db, 1);
    let _: FunctionStats = product_stats();
    let _: Result<String, std::io::Error> = name(1);
    let _: HashMap<u64, String> = products(vec![1, 2]);
    let _: Result<u64, CacheError> = products_invalidate(vec![1]);
    let repo = Repo { db: Db };
    let _: Result<String, std::io::Error> = repo.find(1);
    let _: Result<bool, CacheError> = Repo::find_invalidate(1);
    let _: () = redis_cached::block_on(async {});
}

fn main() {}
