//! `cache = <expr>`: a `static LazyLock<Cache>`, and a skipped `&Cache` parameter. And the
//! futures of annotated functions and methods are `Send` (only built, never polled).
#![deny(warnings)]

use std::sync::LazyLock;

use redis_cached::{Cache, redis_cache};
use serde::{Deserialize, Serialize};

static C: LazyLock<Cache> = LazyLock::new(Cache::disabled);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    id: u64,
    tags: Vec<String>,
}

#[redis_cache(ttl = 60, cache = C)]
async fn from_static(id: u64) -> Row {
    Row { id, tags: vec![] }
}

#[redis_cache(ttl = 60, skip(cache), cache = cache)]
async fn from_param(cache: &Cache, id: u64, tag: &str) -> Result<Row, std::io::Error> {
    let _ = cache.prefix();
    Ok(Row {
        id,
        tags: vec![tag.to_string()],
    })
}

struct Service {
    cache: Cache,
}

impl Service {
    #[redis_cache(ttl = 60, cache = self.cache)]
    async fn from_field(&self, ids: &[u64]) -> Option<Row> {
        let id = *ids.first()?;
        Some(Row { id, tags: vec![] })
    }
}

fn assert_send<T: Send>(_: T) {}

fn main() {
    // Building a future runs nothing: no cache is touched, no Redis contacted.
    assert_send(from_static(1));
    let cache = Cache::disabled();
    assert_send(from_param(&cache, 1, "a"));
    let service = Service {
        cache: cache.clone(),
    };
    assert_send(service.from_field(&[1, 2]));
}
