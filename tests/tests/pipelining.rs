//! Auto-pipelining: the lookups made while another is in flight share one pipeline, and each
//! caller still gets its own value, or its own error.
//!
//! Every test runs on a current-thread runtime, so the order is the spawn order: the first
//! lookup goes alone, the second opens a window (one is in flight), the others join it, and the
//! window is sent once they all have.
//!
//! Every test here captures the logs (they count a window's `trace` event), so no thread of this
//! binary can have `tracing` cache that event's callsite as off. That is why the cluster's case
//! lives here and not in `cluster.rs`, whose other tests run without a subscriber.

use std::time::Duration;

use redis_cache_tests::RedisServer;
use redis_cache_tests::cluster::RedisCluster;
use redis_cache_tests::logs::Capture;
use redis_cached::{Cache, FunctionStats, redis_cache};
use tracing::Level;

/// A hang guard, not a synchronization: each call returns within a few command timeouts.
const GUARD: Duration = Duration::from_secs(60);

const CALLS: u64 = 20;

/// Calls `f(id)` for every id in `0..calls` at once, in spawn order, and returns the values.
async fn at_once<F, Fut>(cache: &Cache, calls: u64, f: F) -> Vec<u64>
where
    F: Fn(Cache, u64) -> Fut,
    Fut: std::future::Future<Output = u64> + Send + 'static,
{
    let calls: Vec<_> = (0..calls)
        .map(|id| tokio::spawn(f(cache.clone(), id)))
        .collect();
    let mut values = Vec::new();
    for call in calls {
        let value = tokio::time::timeout(GUARD, call)
            .await
            .expect("no call hangs");
        values.push(value.expect("no call panics"));
    }
    values
}

fn stats(function: &str) -> FunctionStats {
    redis_cached::stats_for(function).expect("the function was called")
}

#[redis_cache(ttl = 60, skip(cache), cache = cache)]
async fn doubled(cache: &Cache, id: u64) -> u64 {
    id * 2
}

#[tokio::test]
async fn lookups_made_at_once_share_one_pipeline_each_with_its_own_reply() {
    let (logs, _guard) = Capture::install();
    let redis = RedisServer::start();
    let cache = redis.cache("pipelined");
    // A hash under the entry of 7: its caller's lookup is refused (WRONGTYPE), the others' not.
    doubled(&cache, 7).await;
    let keys = redis.keys().await;
    let [entry_of_7] = keys.as_slice() else {
        panic!("one entry: {keys:?}");
    };
    redis.command::<()>(&["DEL", entry_of_7]).await.unwrap();
    redis
        .command::<()>(&["HSET", entry_of_7, "field", "value"])
        .await
        .unwrap();
    for id in (0..CALLS).filter(|id| *id != 7) {
        doubled(&cache, id).await;
    }
    let before = stats("pipelining::doubled");

    let values = at_once(&cache, CALLS, |cache, id| async move {
        doubled(&cache, id).await
    })
    .await;

    let expected: Vec<u64> = (0..CALLS).map(|id| id * 2).collect();
    assert_eq!(values, expected, "each caller gets its own value");
    let after = stats("pipelining::doubled");
    assert_eq!(after.hits - before.hits, CALLS - 1);
    assert_eq!(
        after.invalid - before.invalid,
        1,
        "only 7's lookup was refused"
    );
    assert_eq!(after.executions - before.executions, 1, "only 7 ran again");
    // The first lookup went alone; the other 19 shared one pipeline.
    assert_eq!(logs.count(Level::TRACE, "lookups pipelined"), 1);
    assert!(
        logs.mentions("lookups pipelined lookups=19"),
        "{:?}",
        logs.events()
    );
}

#[redis_cache(ttl = 60, skip(cache), cache = cache)]
async fn tripled(cache: &Cache, id: u64) -> u64 {
    id * 3
}

#[tokio::test]
async fn without_auto_pipeline_every_lookup_goes_alone() {
    let (logs, _guard) = Capture::install();
    let redis = RedisServer::start();
    let cache = redis
        .builder()
        .prefix("unpipelined")
        .auto_pipeline(false)
        .build()
        .unwrap();
    for id in 0..CALLS {
        tripled(&cache, id).await;
    }
    let before = stats("pipelining::tripled");

    let values = at_once(&cache, CALLS, |cache, id| async move {
        tripled(&cache, id).await
    })
    .await;

    let expected: Vec<u64> = (0..CALLS).map(|id| id * 3).collect();
    assert_eq!(values, expected);
    assert_eq!(stats("pipelining::tripled").hits - before.hits, CALLS);
    assert!(!logs.mentions("lookups pipelined"), "{:?}", logs.events());
}

#[redis_cache(ttl = 60, skip(cache), cache = cache)]
async fn squared(cache: &Cache, id: u64) -> u64 {
    id * id
}

/// The caller that opened a window is cancelled before sending it: the callers that joined it
/// send their own lookups, and are served.
#[tokio::test]
async fn a_window_whose_opener_is_cancelled_sends_its_joiners_alone() {
    let (logs, _guard) = Capture::install();
    let redis = RedisServer::start();
    let cache = redis.cache("cancelled-opener");
    for id in 0..CALLS {
        squared(&cache, id).await;
    }
    let before = stats("pipelining::squared");

    let calls: Vec<_> = (0..CALLS)
        .map(|id| {
            let cache = cache.clone();
            tokio::spawn(async move { squared(&cache, id).await })
        })
        .collect();
    // Yielding before any of them ran, this task resumes before the window's opener (the
    // second call) does: it cancels the opener while the others wait in its window.
    tokio::task::yield_now().await;
    calls[1].abort();

    for (id, call) in (0..CALLS).zip(calls) {
        let value = tokio::time::timeout(GUARD, call)
            .await
            .expect("no call hangs");
        match value {
            Ok(value) => assert_eq!(value, id * id),
            Err(err) => assert!(id == 1 && err.is_cancelled(), "{id}: {err}"),
        }
    }
    assert_eq!(stats("pipelining::squared").hits - before.hits, CALLS - 1);
    assert!(!logs.mentions("lookups pipelined"), "{:?}", logs.events());
}

#[redis_cache(ttl = 60, skip(cache), cache = cache)]
async fn halved(cache: &Cache, id: u64) -> u64 {
    id / 2
}

/// Redis stops answering while a window is in flight: every caller in it gets the function's
/// own value after the command deadline, and the window counts once toward the breaker.
#[tokio::test]
async fn a_window_that_times_out_falls_back_for_every_caller() {
    // Every test of this file captures, though this one reads nothing: a test thread without a
    // subscriber can make `tracing` cache the trace event's callsite as uninteresting while
    // another thread's capture comes and goes.
    let (logs, _guard) = Capture::install();
    let redis = RedisServer::start();
    // Deadlines a loaded machine meets before the pause (a timed-out store would count toward
    // the breaker), and short enough not to make the test slow.
    let cache = redis
        .builder()
        .prefix("window-timeout")
        .command_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    for id in 0..CALLS {
        halved(&cache, id).await;
    }
    let before = stats("pipelining::halved");
    redis.pause();

    let values = at_once(&cache, CALLS, |cache, id| async move {
        halved(&cache, id).await
    })
    .await;

    redis.resume();
    let expected: Vec<u64> = (0..CALLS).map(|id| id / 2).collect();
    assert_eq!(values, expected);
    let after = stats("pipelining::halved");
    assert_eq!(after.fallbacks - before.fallbacks, CALLS);
    // Two round trips timed out (the lone lookup and the window): the breaker, which opens at
    // the fifth failure, is still closed.
    let breaker = cache.breaker();
    assert_eq!(breaker.state, redis_cached::BreakerState::Closed);
    assert_eq!(breaker.opened, 0);
    assert_eq!(logs.count(Level::TRACE, "lookups pipelined"), 1);
}

#[redis_cache(ttl = 60, skip(cache), cache = cache)]
async fn negated(cache: &Cache, id: u64) -> u64 {
    u64::MAX - id
}

/// Polls `future` once.
async fn poll_once<F: std::future::Future + Unpin>(future: &mut F) {
    std::future::poll_fn(|cx| {
        let _ = std::pin::Pin::new(&mut *future).poll(cx);
        std::task::Poll::Ready(())
    })
    .await;
}

/// The opener of a window is held and never polled again (its task stuck behind blocking code,
/// say): a lookup that joined it does not wait for it longer than it would have waited alone,
/// and its caller gets the function's own value.
#[tokio::test]
async fn a_lookup_waits_for_a_stuck_window_no_longer_than_its_deadlines() {
    let (logs, _guard) = Capture::install();
    let redis = RedisServer::start();
    let cache = redis
        .builder()
        .prefix("stuck-opener")
        .connect_timeout(Duration::from_secs(1))
        .command_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    for id in 0..3 {
        negated(&cache, id).await;
    }
    let before = stats("pipelining::negated");

    let mut alone = Box::pin(negated(&cache, 0));
    poll_once(&mut alone).await;
    let mut opener = Box::pin(negated(&cache, 1));
    poll_once(&mut opener).await;
    // Joins the opener's window, which is never sent.
    let joiner = tokio::spawn({
        let cache = cache.clone();
        async move { negated(&cache, 2).await }
    });
    let value = tokio::time::timeout(GUARD, joiner)
        .await
        .expect("the joiner does not wait for the stuck opener")
        .unwrap();

    assert_eq!(value, u64::MAX - 2);
    assert_eq!(alone.await, u64::MAX);
    let after = stats("pipelining::negated");
    assert_eq!(
        after.fallbacks - before.fallbacks,
        1,
        "the joiner ran uncached"
    );
    assert_eq!(after.hits - before.hits, 1, "the lookup alone was served");
    drop(opener);
    assert!(!logs.mentions("lookups pipelined"), "{:?}", logs.events());
}

#[redis_cache(ttl = 300, skip(cache), cache = cache)]
async fn on_cluster(cache: &Cache, id: u64) -> u64 {
    id * 7
}

/// Lookups made at once on a cluster share a pipeline per primary, and each caller gets its own
/// value. (Redirections within a window are the resharding test's, under 64 tasks.)
#[tokio::test]
async fn lookups_made_at_once_share_a_pipeline_per_primary() {
    let (logs, _guard) = Capture::install();
    let cluster = RedisCluster::start();
    let cache = cluster.cache("pipelined");
    // Enough keys that each of the 3 primaries gets more than one.
    const CLUSTER_CALLS: u64 = 60;
    for id in 0..CLUSTER_CALLS {
        on_cluster(&cache, id).await;
    }
    let before = stats("pipelining::on_cluster");

    let values = at_once(&cache, CLUSTER_CALLS, |cache, id| async move {
        on_cluster(&cache, id).await
    })
    .await;

    let expected: Vec<u64> = (0..CLUSTER_CALLS).map(|id| id * 7).collect();
    assert_eq!(values, expected, "each caller gets its own value");

    let after = stats("pipelining::on_cluster");
    assert_eq!(after.hits - before.hits, CLUSTER_CALLS);
    // Each primary sends its first lookup alone and the rest of its share in a window: 60 keys
    // spread over 3 primaries give each more than one. (Usually exactly one window each; a
    // lookup held up by a read of the slot map would open a second.)
    let windows = logs.count(Level::TRACE, "lookups pipelined");
    assert!(windows >= 3, "{windows} windows: {:?}", logs.events());
}
