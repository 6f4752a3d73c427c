//! In an impl block, a function without `self` looks like a free function to the macro, so the
//! `_refresh` companion calls it by its bare name, which does not resolve: the error says to
//! write `companions = false` (or to take `&self`).

use redis_cached::redis_cache;

struct Repo;

impl Repo {
    #[redis_cache(ttl = 5)]
    async fn find(id: u64) -> u64 {
        id
    }
}

fn main() {}
