//! Methods: `&self` in an inherent impl and in a generic impl, `cache = self.cache`,
//! `include_self` on a `Serialize` receiver, and a method with its own generics.
#![deny(warnings)]

use redis_cached::{Cache, redis_cache};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A service handle: not `Serialize`, so it stays out of the key (the default for `self`).
pub struct Service {
    cache: Cache,
    base: u64,
}

impl Service {
    /// Doc comment on a method.
    #[redis_cache(ttl = 60)]
    pub async fn plain(&self, id: u64) -> String {
        format!("{}-{id}", self.base)
    }

    #[redis_cache(ttl = 60, cache = self.cache)]
    pub(crate) async fn own_cache(&self, id: u64) -> Result<u64, String> {
        if id == 0 {
            return Err("zero".to_string());
        }
        Ok(self.base + id)
    }

    #[redis_cache(ttl = 60, none_ttl = 5, cache = self.cache)]
    async fn generic_method<K>(&self, key: K) -> Option<K>
    where
        K: Serialize + DeserializeOwned + Clone + Send + Sync,
    {
        (self.base > 0).then(|| key.clone())
    }
}

pub trait Backend: Send + Sync {
    fn load(&self, id: u64) -> Option<u64>;
}

pub struct Repo<T> {
    backend: T,
}

impl<T: Backend> Repo<T> {
    #[redis_cache(ttl = 60)]
    pub async fn load(&self, id: u64) -> Option<u64> {
        self.backend.load(id)
    }
}

impl<T> Repo<T>
where
    T: Backend + 'static,
{
    #[redis_cache(ttl = 60, skip(label), name = "repo.load_many")]
    pub async fn load_many(&self, ids: &[u64], label: &str) -> Vec<u64> {
        let _ = label;
        ids.iter().filter_map(|id| self.backend.load(*id)).collect()
    }
}

/// A value-like receiver whose state decides the answer.
#[derive(Serialize)]
pub struct Query {
    tenant: u32,
}

impl Query {
    #[redis_cache(ttl = 60, include_self)]
    pub async fn run(&self, page: u32) -> Vec<u32> {
        vec![self.tenant, page]
    }
}

struct Fixed;

impl Backend for Fixed {
    fn load(&self, id: u64) -> Option<u64> {
        Some(id)
    }
}

fn main() {
    // Referenced, never called: nothing here may reach Redis.
    let _ = Service::plain;
    let _ = Service::own_cache;
    let _ = Service::generic_method::<String>;
    let _ = Repo::<Fixed>::load;
    let _ = Repo::<Fixed>::load_many;
    let _ = Query::run;
    let _ = Service {
        cache: Cache::disabled(),
        base: 1,
    };
    let _ = Repo { backend: Fixed };
    let _ = Query { tenant: 1 };
}
