//! Awaiting the local tier's events (`Cache::local_events`) instead of sleeping.

use std::time::Duration;

use redis_cached::Cache;
use tokio::sync::watch::Receiver;

/// How long an event may take on a loaded machine (a failover included) before a test gives up.
pub const EVENT_WAIT: Duration = Duration::from_secs(60);

/// Waits until `cache`'s local tier hears every change from Redis (its channel is up).
pub async fn coherent(cache: &Cache) {
    until(cache, |cache| cache.local_coherent()).await;
}

/// Waits until Redis tracks `functions` functions for `cache`'s local tier (each asked for by its
/// first call): copies read from then on are covered by the channel.
pub async fn tracked(cache: &Cache, functions: usize) {
    until(cache, |cache| {
        cache.local_tracked_functions() == Some(functions)
    })
    .await;
}

/// Waits until `cache`'s local tier has lost its channel.
pub async fn incoherent(cache: &Cache) {
    until(cache, |cache| !cache.local_coherent()).await;
}

async fn until(cache: &Cache, done: impl Fn(&Cache) -> bool) {
    let mut events = cache.local_events().expect("a local tier");
    tokio::time::timeout(EVENT_WAIT, events.wait_for(|_| done(cache)))
        .await
        .expect("the local tier's channel changes state in time")
        .expect("the tier is alive");
}

/// Waits for the tier's next event after the last one `events` saw (a copy removed, the channel
/// up or down).
pub async fn next_event(events: &mut Receiver<u64>) {
    tokio::time::timeout(EVENT_WAIT, events.changed())
        .await
        .expect("the announcement arrives")
        .expect("the tier is alive");
}

fn stats(function: &str) -> redis_cached::FunctionStats {
    redis_cached::stats_for(function).expect("the function was called")
}

/// Calls `call` until one call is answered by the local tier (`function`'s `local_hits` grows)
/// and returns that answer. A copy made by a read can be removed by the late announcement of
/// this process's own store of the same key (Redis cannot tell it from a newer change); the
/// next read copies it again. At most 100 calls.
pub async fn local_hit<T, Fut>(function: &str, mut call: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = T>,
{
    for _ in 0..100 {
        let before = stats(function).local_hits;
        let value = call().await;
        if stats(function).local_hits > before {
            return value;
        }
    }
    panic!("{function}: no local hit in 100 calls");
}

/// Waits until `function` has `entries` copies in the tier (announcements remove them).
pub async fn entries_become(cache: &Cache, function: &str, entries: u64) {
    let mut events = cache.local_events().expect("a local tier");
    let reached = events.wait_for(|_| stats(function).local_entries == entries);
    tokio::time::timeout(EVENT_WAIT, reached)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{function}: {} copies, not {entries}",
                stats(function).local_entries
            )
        })
        .expect("the tier is alive");
}
