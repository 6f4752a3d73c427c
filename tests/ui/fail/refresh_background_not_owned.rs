use std::rc::Rc;

use redis_cached::redis_cache;

/// Not `Clone`: the spawned refresh cannot take a copy of `self`.
struct Repository {
    rows: Vec<u64>,
}

impl Repository {
    #[redis_cache(ttl = 60, refresh = "background")]
    async fn row(&self, id: u64) -> u64 {
        self.rows[id as usize]
    }
}

/// Not `Send`: the spawned refresh may run on another thread.
#[redis_cache(ttl = 60, refresh = "background", skip(counter))]
async fn counted(counter: Rc<u64>, id: u64) -> u64 {
    *counter + id
}

/// Captures `limit`: a background refresh outlives the call, so its closures cannot borrow it.
#[redis_cache(ttl = |v: &u64| std::time::Duration::from_secs(*v.min(&limit)), refresh = "background")]
async fn capped(limit: u64, id: u64) -> u64 {
    limit + id
}

fn main() {}
