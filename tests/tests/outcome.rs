//! `{fn}_with_outcome`: every outcome a call can have, observed through the companion, and the
//! age and time left of the entry served, checked against that entry's header in Redis.

use std::future::Future;
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis_cache_tests::local::{coherent, local_hit};
use redis_cache_tests::{Gate, RedisServer, unreachable_cache};
use redis_cached::{Cache, CallOutcome, Outcome, redis_cache};

#[redis_cache(ttl = 300, early_refresh = false, condition = id != 0, skip(cache), cache = cache)]
async fn plain(cache: &Cache, id: u64) -> u64 {
    id
}

#[redis_cache(ttl = 300, early_refresh = false, skip(cache, gate), cache = cache)]
async fn gated(cache: &Cache, gate: &Gate, id: u64) -> u64 {
    gate.wait().await;
    id
}

#[redis_cache(ttl = 300, stale = 60, refresh = "background", skip(cache), cache = cache)]
async fn staling(cache: Cache, id: u64) -> u64 {
    id
}

#[redis_cache(ttl = 300, local = 10, early_refresh = false, skip(cache), cache = cache)]
async fn kept(cache: &Cache, id: u64) -> u64 {
    id
}

/// The only entry under `prefix` whose key names `function`: its key and bytes.
async fn entry(redis: &RedisServer, prefix: &str, function: &str) -> (String, Vec<u8>) {
    let keys: Vec<String> = redis
        .command(&["KEYS", &format!("{prefix}:outcome::{function}:*}}")])
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let bytes: Vec<u8> = redis.command(&["GET", &keys[0]]).await.unwrap();
    (keys[0].clone(), bytes)
}

fn header_ms(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// The outcome served `bytes`' entry: its computed-at time is the header's, its age and time
/// left are measured from it.
fn serves(outcome: &CallOutcome, bytes: &[u8]) {
    let computed_at = header_ms(bytes, 8);
    let fresh_until = header_ms(bytes, 16);
    assert_eq!(
        outcome.computed_at(),
        Some(UNIX_EPOCH + Duration::from_millis(computed_at)),
        "{outcome:?}"
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let age = outcome.age().expect("an age").as_millis() as u64;
    assert!(age <= now - computed_at, "{outcome:?}");
    let left = outcome.time_left().expect("a time left").as_millis() as u64;
    assert_eq!(
        age + left,
        fresh_until.saturating_sub(computed_at).max(age),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_miss_then_a_hit_report_themselves_and_the_hits_entry() {
    let redis = RedisServer::start();
    let cache = redis.cache("outcome-hit");
    let (value, outcome) = plain_with_outcome(&cache, 1).await;
    assert_eq!((value, outcome.outcome()), (1, Outcome::Miss));
    assert_eq!(outcome.age(), None, "a miss serves no stored entry");
    cache.flush().await;
    let (value, outcome) = plain_with_outcome(&cache, 1).await;
    assert_eq!((value, outcome.outcome()), (1, Outcome::Hit));
    let (_, bytes) = entry(&redis, "outcome-hit", "plain").await;
    serves(&outcome, &bytes);
    assert!(outcome.time_left().unwrap() > Duration::from_secs(200));
    // The plain call still counts, and reports nothing.
    assert_eq!(plain(&cache, 1).await, 1);
}

#[tokio::test]
async fn a_bypassed_call_and_a_fallback_report_no_entry() {
    let redis = RedisServer::start();
    let cache = redis.cache("outcome-bypass");
    let (_, outcome) = plain_with_outcome(&cache, 0).await;
    assert_eq!(outcome.outcome(), Outcome::Bypassed);
    assert_eq!(outcome.age(), None);
    let down = unreachable_cache("outcome-down");
    let (value, outcome) = plain_with_outcome(&down, 5).await;
    assert_eq!((value, outcome.outcome()), (5, Outcome::Fallback));
    assert_eq!((outcome.age(), outcome.time_left()), (None, None));
}

/// A call that finds the same key in flight follows it: it is polled once, which takes it as far
/// as joining the flight (no I/O comes before), then the leader is let go.
#[tokio::test]
async fn a_call_following_another_reports_coalesced_with_the_leaders_entry() {
    let redis = RedisServer::start();
    let cache = redis.cache("outcome-coalesced");
    let gate = Gate::new();
    let leader = {
        let (cache, gate) = (cache.clone(), &gate);
        async move { gated(&cache, gate, 3).await }
    };
    let mut leader = std::pin::pin!(leader);
    let mut follower = std::pin::pin!(gated_with_outcome(&cache, &gate, 3));
    tokio::select! {
        biased;
        _ = leader.as_mut() => unreachable!("the leader waits at the gate"),
        () = gate.until_arrived(1) => {}
    }
    let polled = std::future::poll_fn(|cx| Poll::Ready(follower.as_mut().poll(cx))).await;
    assert!(polled.is_pending(), "the follower waits for the leader");
    gate.open();
    let ((value, outcome), led) = tokio::join!(follower, leader);
    assert_eq!((value, led), (3, 3));
    assert_eq!(outcome.outcome(), Outcome::Coalesced);
    cache.flush().await;
    let (_, bytes) = entry(&redis, "outcome-coalesced", "gated").await;
    serves(&outcome, &bytes);
}

/// An entry past its TTL, inside its stale window (its header rewritten so, its Redis TTL left
/// alone), is served as stale, with its age, while a task refreshes it.
#[tokio::test]
async fn a_stale_entry_reports_stale_with_its_age_and_no_time_left() {
    let redis = RedisServer::start();
    let cache = redis.cache("outcome-stale");
    staling(cache.clone(), 4).await;
    cache.flush().await;
    let (key, _) = entry(&redis, "outcome-stale", "staling").await;
    let bytes = redis.make_stale(&key).await;
    let (value, outcome) = staling_with_outcome(cache.clone(), 4).await;
    assert_eq!((value, outcome.outcome()), (4, Outcome::Stale));
    assert_eq!(outcome.time_left(), Some(Duration::ZERO));
    serves(&outcome, &bytes);
    cache.flush().await;
}

#[tokio::test]
async fn a_local_hit_reports_the_entry_it_copied() {
    let redis = RedisServer::start();
    let cache = redis.cache("outcome-local");
    kept(&cache, 6).await;
    cache.flush().await;
    coherent(&cache).await;
    let (value, outcome) = local_hit("outcome::kept", || kept_with_outcome(&cache, 6)).await;
    assert_eq!((value, outcome.outcome()), (6, Outcome::LocalHit));
    let (_, bytes) = entry(&redis, "outcome-local", "kept").await;
    serves(&outcome, &bytes);
}

#[redis_cache(ttl = 300, skip(cache), cache = cache)]
async fn outer(cache: &Cache, id: u64) -> u64 {
    plain(cache, id).await + 1
}

/// The calls a function's body makes are ordinary calls: the outer call reports its own outcome,
/// not theirs.
#[tokio::test]
async fn calls_made_by_the_body_do_not_report() {
    let redis = RedisServer::start();
    let cache = redis.cache("outcome-nested");
    plain(&cache, 9).await;
    cache.flush().await;
    let (value, outcome) = outer_with_outcome(&cache, 9).await;
    assert_eq!((value, outcome.outcome()), (10, Outcome::Miss));
    assert_eq!(outcome.age(), None);
}
