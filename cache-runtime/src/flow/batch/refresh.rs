//! A batch function's refresh in a spawned task (`refresh = "background"`): when a call finds
//! entries to refresh early or in their stale window and nothing to compute, it returns what it
//! served, and a task takes their locks (leaving any another process holds to that process),
//! calls the function with those keys and stores them. Inside the call otherwise, with the misses.

use std::future::Future;
use std::marker::PhantomData;

use super::{Batch, BatchBackground, BatchComputed, BatchMap, BatchReturn, Item, ItemCodec};
use crate::cache::Cache;
use crate::envelope::Meta;
use crate::flow::Inline;
use crate::flow::refresh::RefreshReason;
use crate::policy::{CacheValue, Rules};
use crate::site::Site;
use crate::stats::Outcome;

/// Entries of a batch call to refresh in a spawned task.
#[doc(hidden)]
pub struct BatchRefreshJob<'a, K, V> {
    pub(super) site: &'static Site,
    pub(super) cache: &'a Cache,
    pub(super) codec: ItemCodec<V>,
    pub(super) rules: &'a Rules<'a, V>,
    /// Each entry's key, Redis key, the served entry's header, and why it is refreshed.
    pub(super) items: Vec<(K, String, Meta, RefreshReason)>,
}

impl<K, V> std::fmt::Debug for BatchRefreshJob<'_, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchRefreshJob")
            .field("items", &self.items.len())
            .finish_non_exhaustive()
    }
}

impl<F, K, V: 'static> BatchBackground<F, K, V> {
    /// The body of a batch function with `refresh = "background"` returning `R`.
    pub fn new<R, Fut>(make: F) -> Self
    where
        R: BatchReturn<Map: Send, Error: Send> + Send + 'static,
        R::Map: BatchMap<Key = K, Value = V>,
        F: FnOnce(Vec<K>) -> Fut + Send + 'static,
        Fut: Future<Output = BatchComputed<R>> + Send + 'static,
        K: Clone + Send + Sync + 'static,
        V: CacheValue + Send + Sync,
    {
        BatchBackground {
            make,
            spawn: spawn::<R, F, Fut, K, V>,
            keys: PhantomData,
        }
    }
}

/// Runs `job` in a spawned task ([`Cache::flush`] waits for it), for the keys this process is
/// not refreshing already.
fn spawn<R, F, Fut, K, V>(job: BatchRefreshJob<'_, K, V>, rules: Rules<'static, V>, make: F)
where
    R: BatchReturn<Map: Send, Error: Send> + Send + 'static,
    R::Map: BatchMap<Key = K, Value = V>,
    F: FnOnce(Vec<K>) -> Fut + Send + 'static,
    Fut: Future<Output = BatchComputed<R>> + Send + 'static,
    K: Clone + Send + Sync + 'static,
    V: CacheValue + Send + Sync + 'static,
{
    let refreshing = job.cache.refreshing();
    let claimed: Vec<_> = job
        .items
        .into_iter()
        .filter_map(|(key, redis, meta, why)| {
            let claim = refreshing.claim(&redis)?;
            Some((claim, key, redis, meta, why))
        })
        .collect();
    if claimed.is_empty() {
        return;
    }
    let (site, cache, codec) = (job.site, job.cache.clone(), job.codec);
    job.cache.tasks().spawn(async move {
        let (Some(conn), Some(locks)) = (cache.connection(), cache.locks()) else {
            return;
        };
        let batch = Batch {
            site,
            cache: &cache,
            conn,
            locks,
            codec,
            rules: &rules,
            local: None,
            chunk: cache.limits().batch_chunk,
            counts_outcomes: false,
        };
        let mut claims = Vec::with_capacity(claimed.len());
        let mut items: Vec<Item<'_, K, V>> = claimed
            .into_iter()
            .map(|(claim, key, redis, meta, why)| {
                claims.push(claim);
                let mut item = Item::new(key, 0, redis);
                item.refresh = Some((meta, why));
                // Its callers were served already; only the new value matters here.
                item.serve(None, Outcome::Hit);
                item
            })
            .collect();
        batch.lock(&mut items).await;
        let _: R = batch.compute(items, Inline(make)).await;
        drop(claims);
    });
}
