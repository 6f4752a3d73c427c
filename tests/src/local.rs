//! Awaiting the local tier's events (`Cache::local_events`) instead of sleeping.

use std::time::Duration;

use cache_runtime::Cache;
use tokio::sync::watch::Receiver;

/// How long an event may take on a loaded machine (a failover included) before a test gives up.
pub const EVENT_WAIT: Duration = Duration::from_secs(60);

/// Waits until `cache`'s local tier hears every change from Redis (its channel is up).
pub async fn coherent(cache: &Cache) {
    until(cache, |cache| cache.local_coherent()).await;
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
