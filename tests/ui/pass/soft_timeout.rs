#![deny(warnings)]

use std::sync::Arc;
use std::time::Duration;

use redis_cached::redis_cache;

/// A duration string, with owned parameters and a cheap-to-clone handle skipped from the key.
#[redis_cache(ttl = "5m", stale = "1m", soft_timeout = "200ms", skip(pool))]
async fn product(pool: Arc<Vec<String>>, id: usize) -> Option<String> {
    pool.get(id).cloned()
}

fn settings_soft_ms() -> u64 {
    150
}

/// An expression, evaluated per call; closures that capture nothing go along into the refresh.
#[redis_cache(
    ttl = |token: &(String, u64)| Duration::from_secs(token.1),
    stale = 30,
    soft_timeout = Duration::from_millis(settings_soft_ms())
)]
async fn token(user: String) -> Result<(String, u64), String> {
    Ok((user, 60))
}

#[derive(Clone)]
struct Service {
    names: Arc<Vec<String>>,
}

impl Service {
    /// A method taking `&self`: the refresh left running has a clone of `self`.
    #[redis_cache(ttl = 60, stale = 30, soft_timeout = "1s500ms")]
    async fn name(&self, id: usize) -> Option<String> {
        self.names.get(id).cloned()
    }
}

async fn uses(service: Service) {
    let _ = product(Arc::new(Vec::new()), 1).await;
    let _ = token("u".into()).await;
    let _ = service.name(0).await;
}

fn main() {
    let _ = uses;
}
