#![deny(warnings)]

use std::sync::Arc;
use std::time::Duration;

use redis_cached::redis_cache;

/// Owned parameters and a cheap-to-clone handle, skipped from the key.
#[redis_cache(ttl = "5m", stale = 60, refresh = "background", skip(pool))]
async fn product(pool: Arc<Vec<String>>, id: usize) -> Option<String> {
    pool.get(id).cloned()
}

/// Closures that capture nothing go along into the refresh.
#[redis_cache(
    ttl = |token: &(String, u64)| Duration::from_secs(token.1),
    unless = |token: &(String, u64)| token.0.is_empty(),
    refresh = "background"
)]
async fn token(user: String) -> Result<(String, u64), String> {
    Ok((user, 60))
}

/// A `&'static` parameter lives as long as the refresh.
#[redis_cache(ttl = 60, refresh = "background")]
async fn region(name: &'static str) -> String {
    name.to_uppercase()
}

#[redis_cache(ttl = 60, refresh = "inline")]
async fn inline(id: u64) -> u64 {
    id
}

#[derive(Clone)]
struct Service {
    names: Arc<Vec<String>>,
}

impl Service {
    fn lookup(&self, id: usize) -> Option<String> {
        self.names.get(id).cloned()
    }

    /// `self` in the body: a field, a method, passed on; `self::` paths are left alone.
    #[redis_cache(ttl = 60, refresh = "background", key = id)]
    async fn name(&self, id: usize) -> Option<String> {
        let _ = self::helper(self);
        self.lookup(id).or_else(|| self.names.first().cloned())
    }

    /// `self: &Self` written out is `&self`.
    #[redis_cache(ttl = 60, refresh = "background")]
    async fn first(self: &Self, extra: u64) -> Option<String> {
        self.names.first().map(|n| format!("{n}{extra}"))
    }

    /// By value: the refresh owns `self`.
    #[redis_cache(ttl = 60, refresh = "background")]
    async fn count(self, extra: u64) -> u64 {
        self.names.len() as u64 + extra
    }

    /// Generic over an owned, thread-safe parameter.
    #[redis_cache(ttl = 60, refresh = "background")]
    async fn describe<T>(&self, value: T) -> String
    where
        T: serde::Serialize + std::fmt::Debug + Send + 'static,
    {
        format!("{value:?} of {}", self.names.len())
    }
}

fn helper(service: &Service) -> usize {
    service.names.len()
}

fn main() {
    let service = Service {
        names: Arc::new(vec!["a".into()]),
    };
    let _ = product(Arc::new(Vec::new()), 1);
    let _ = token("u".into());
    let _ = inline(1);
    let _ = region("eu");
    let _ = service.first(1);
    let _ = service.name(0);
    let _ = service.describe(3u8);
    let _ = service.clone().count(1);
}
