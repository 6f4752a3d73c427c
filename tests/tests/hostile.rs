//! Hostile and corrupt data: what a writer with access to the cache's keys, a lying server or a
//! bad setting can and cannot do. Anything read from Redis is untrusted input: it can make a call
//! a miss, never a crash, an unbounded allocation or a wrong value.
//!
//! A scenario that could crash the process runs in a child (`hostile_reader`), which must exit
//! normally.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use redis_cache_tests::RedisServer;
use redis_cache_tests::hostile::{envelope, varint};

/// What the reader printed after reading `crafted` under its function's key, on `thread`.
fn read_crafted(function: &str, thread: &str, crafted: &[u8]) -> (String, u64, u64) {
    let redis = RedisServer::start();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hostile_reader"))
        .args([&redis.url(), "hostile", function, thread])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the reader");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a line").expect("stdout");
    let key = first.strip_prefix("key ").expect("key ...");
    let mut conn = redis.client().get_connection().unwrap();
    let () = redis::cmd("SET")
        .arg(key)
        .arg(crafted)
        .query(&mut conn)
        .unwrap();
    let stdin = child.stdin.as_mut().unwrap();
    stdin.write_all(b"go\n").unwrap();
    stdin.flush().unwrap();
    let report = lines.next().map(|line| line.unwrap_or_default());
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "the reader exited with {status}: {report:?}"
    );
    let report = report.expect("a report");
    let (answer, rest) = report
        .strip_prefix("answer ")
        .and_then(|r| r.split_once(" invalid "))
        .expect("answer ... invalid ...");
    let (invalid, peak) = rest.split_once(" peak ").expect("... peak ...");
    (
        answer.to_string(),
        invalid.parse().unwrap(),
        peak.parse().unwrap(),
    )
}

/// `Node { children: Vec<Node> }` with one child per level, `levels` deep: `0x01` repeated.
fn nested(levels: usize) -> Vec<u8> {
    let mut payload = vec![1u8; levels];
    payload.push(0);
    envelope(&payload, false)
}

#[test]
fn a_value_nested_200_000_levels_deep_is_a_miss_on_the_main_thread_and_on_a_worker() {
    for thread in ["main", "worker"] {
        let (answer, invalid, _) = read_crafted("tree", thread, &nested(200_000));
        assert_eq!(answer, "0 children", "recomputed on {thread}");
        assert_eq!(invalid, 1, "counted as an unreadable entry on {thread}");
    }
}

#[test]
fn a_small_entry_expanding_to_60_mb_of_empty_strings_is_a_miss_within_bounded_memory() {
    // 60 million empty strings: 60 MB of bytes, compressed to a few hundred KB (an entry the
    // cache would accept), and 1.4 GB once decoded.
    let count = 60_000_000u64;
    let mut payload = varint(count);
    payload.resize(payload.len() + count as usize, 0);
    let crafted = envelope(&payload, true);
    assert!(crafted.len() < 1024 * 1024, "{} bytes", crafted.len());
    drop(payload);
    let (answer, invalid, peak) = read_crafted("strings", "worker", &crafted);
    assert_eq!((answer.as_str(), invalid), ("fresh 1", 1));
    // The decode's budget (64 x max_value_bytes) and the decompressed buffer, not 1.4 GB.
    assert!(peak < 256 * 1024 * 1024, "peak memory {peak} bytes");
}

#[test]
fn a_sequence_of_zero_sized_values_claiming_2_pow_63_elements_ends() {
    let crafted = envelope(&varint(1 << 63), false);
    let (answer, invalid, _) = read_crafted("units", "worker", &crafted);
    assert_eq!((answer.as_str(), invalid), ("3 units", 1));
}

#[test]
fn an_uncompressed_entry_longer_than_max_value_bytes_is_not_parsed() {
    // 2 MB of strings of one byte each: a valid encoding, longer than the default 1 MiB limit.
    let count = 1_000_000u64;
    let mut payload = varint(count);
    for _ in 0..count {
        payload.extend_from_slice(&[1, b'x']);
    }
    let (answer, invalid, _) = read_crafted("strings", "worker", &envelope(&payload, false));
    assert_eq!((answer.as_str(), invalid), ("fresh 1", 1));
}

// Settings.

use std::time::Duration;

use redis_cached::{Cache, redis_cache};

#[test]
fn a_prefix_cannot_nest_in_another() {
    let err = Cache::builder().prefix("shop:eu").build().unwrap_err();
    assert!(err.to_string().contains("`:` ends the prefix"), "{err}");
    assert!(Cache::builder().prefix("shop-eu").build().is_ok());
}

#[redis_cache(ttl = 300, skip(cache), cache = cache, name = "hostile::neighbour")]
async fn neighbour(cache: &Cache, id: u64) -> u64 {
    id
}

#[tokio::test]
async fn a_clear_touches_only_the_keys_of_its_own_cache() {
    let redis = RedisServer::start();
    let (shop, shop_eu) = (redis.cache("shop"), redis.cache("shop-eu"));
    for id in 0..20 {
        neighbour(&shop, id).await;
        neighbour(&shop_eu, id).await;
    }
    assert_eq!(shop.clear().await, Ok(20));
    let left: Vec<String> = redis.keys().await;
    assert_eq!(left.len(), 20);
    assert!(left.iter().all(|k| k.starts_with("shop-eu:")), "{left:?}");
}

#[redis_cache(
    ttl = 18446744073709551615,
    stale = 18446744073709551615,
    jitter = 0.0,
    skip(cache),
    cache = cache
)]
async fn forever(cache: &Cache, id: u64) -> u64 {
    id
}

#[tokio::test]
async fn durations_as_long_as_can_be_are_taken_as_the_longest_allowed_not_a_panic() {
    let redis = RedisServer::start();
    let cache = redis
        .builder()
        .prefix("long")
        .connect_timeout(Duration::MAX)
        .command_timeout(Duration::MAX)
        .lock_lease(Duration::MAX)
        .lock_wait(Duration::MAX)
        .circuit_breaker(5, Duration::MAX, Duration::MAX)
        .build()
        .unwrap();
    assert_eq!(forever(&cache, 1).await, 1);
    assert_eq!(forever(&cache, 1).await, 1);
    let stats = redis_cached::stats_for("hostile::forever").unwrap();
    assert_eq!((stats.misses, stats.hits, stats.writes), (1, 1, 1));
    // Kept ten years (the TTL and the stale window together), not for ever.
    let key = redis.keys().await.into_iter().next().unwrap();
    let pttl: i64 = redis.command(&["PTTL", &key]).await.unwrap();
    let ten_years_ms = 10 * 365 * 24 * 3600 * 1000i64;
    assert!(
        pttl > ten_years_ms - 60_000 && pttl <= ten_years_ms,
        "{pttl}"
    );
}

static RENEWED: redis_cache_tests::Gate = redis_cache_tests::Gate::new();

#[redis_cache(ttl = 300, skip(cache), cache = cache, name = "hostile::slow")]
async fn slow(cache: &Cache, id: u64) -> u64 {
    RENEWED.wait().await;
    id
}

/// `EVALSHA`/`EVAL` calls the server refused, and accepted.
fn script_calls(redis: &RedisServer) -> (u64, u64) {
    let stats = redis.cli(&["INFO", "commandstats"]);
    let field = |name: &str| -> u64 {
        stats
            .lines()
            .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
            .filter_map(|l| l.split(name).nth(1)?.split(',').next()?.parse::<u64>().ok())
            .sum()
    };
    (field("rejected_calls="), field("calls="))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_survives_a_failed_renewal_and_its_value_is_stored() {
    let redis = RedisServer::start();
    // Renewed every 2 s: a refused renewal is seen and the ACL restored well before the lease
    // of 6 s lapses, even on a loaded machine (without the fix no renewal follows the refused
    // one, and the lease lapses all the same).
    let cache = redis
        .builder()
        .prefix("renew")
        .lock_lease(Duration::from_secs(6))
        .build()
        .unwrap();
    let call = tokio::spawn({
        let cache = cache.clone();
        async move { slow(&cache, 7).await }
    });
    RENEWED.until_arrived(1).await;
    // The lock is held; refuse scripts (a renewal fails) until one renewal was refused.
    let (refused, _) = script_calls(&redis);
    redis.cli(&["ACL", "SETUSER", "default", "-evalsha", "-eval"]);
    redis_cache_tests::eventually("a renewal refused", || script_calls(&redis).0 > refused).await;
    redis.cli(&["ACL", "SETUSER", "default", "+evalsha", "+eval"]);
    // Renewals go on: one more is accepted (without the fix none is ever sent again, and the
    // lease lapses).
    let (_, accepted) = script_calls(&redis);
    redis_cache_tests::eventually("a renewal accepted", || script_calls(&redis).1 > accepted).await;
    RENEWED.open();
    assert_eq!(call.await.unwrap(), 7);
    let stats = redis_cached::stats_for("hostile::slow").unwrap();
    assert_eq!((stats.writes, stats.fenced), (1, 0), "{stats:?}");
}

// A refresh that finds nothing to store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

use redis_cache_tests::Runs;

static ROW_GONE: AtomicBool = AtomicBool::new(false);

#[redis_cache(ttl = 300, stale = 300, skip(cache, runs), cache = cache, name = "hostile::row")]
async fn row(cache: &Cache, runs: &Runs, id: u64) -> Option<u64> {
    runs.tick();
    (!ROW_GONE.load(SeqCst)).then_some(id)
}

#[redis_cache(
    ttl = 300,
    stale = 300,
    unless = |v: &u64| *v == 0,
    skip(cache, runs),
    cache = cache,
    name = "hostile::count"
)]
async fn count(cache: &Cache, runs: &Runs, id: u64) -> u64 {
    runs.tick();
    if runs.count() > 1 { 0 } else { id }
}

#[redis_cache(ttl = 300, stale = 300, batch = ids, skip(cache, runs), cache = cache)]
async fn rows(cache: &Cache, runs: &Runs, ids: Vec<u64>) -> HashMap<u64, u64> {
    runs.tick();
    match runs.count() {
        1 => ids.iter().map(|id| (*id, *id)).collect(),
        // Row 2 was deleted since.
        _ => ids
            .iter()
            .filter(|id| **id != 2)
            .map(|id| (*id, *id))
            .collect(),
    }
}

/// The entries under `prefix` (not locks or tags), each made stale: its logical expiry, bytes
/// 16..24 of the envelope, moved into the past.
async fn all_stale(redis: &RedisServer, prefix: &str) -> Vec<String> {
    let past = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 1_000;
    let mut conn = redis.connection().await;
    let keys: Vec<String> = redis
        .keys()
        .await
        .into_iter()
        .filter(|k| k.starts_with(&format!("{prefix}:")) && !k.ends_with(":lock"))
        .collect();
    for key in &keys {
        let _: i64 = redis::cmd("SETRANGE")
            .arg(key)
            .arg(16)
            .arg(past.to_le_bytes().as_slice())
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    keys
}

#[tokio::test]
async fn a_refresh_with_nothing_to_store_removes_the_entry_it_refreshed() {
    let redis = RedisServer::start();
    let (runs, count_runs, batch_runs) = (Runs::default(), Runs::default(), Runs::default());

    // `None`: the row was deleted.
    let cache = redis.cache("gone");
    assert_eq!(row(&cache, &runs, 1).await, Some(1));
    assert_eq!(all_stale(&redis, "gone").await.len(), 1);
    ROW_GONE.store(true, SeqCst);
    assert_eq!(row(&cache, &runs, 1).await, None, "the refresh's answer");
    assert!(redis.keys().await.iter().all(|k| !k.starts_with("gone:")));
    assert_eq!(row(&cache, &runs, 1).await, None);
    assert_eq!(
        runs.count(),
        3,
        "a miss, not the deleted record served stale"
    );

    // A value `unless` refuses.
    let cache = redis.cache("refused");
    assert_eq!(count(&cache, &count_runs, 5).await, 5);
    assert_eq!(all_stale(&redis, "refused").await.len(), 1);
    assert_eq!(count(&cache, &count_runs, 5).await, 0);
    assert!(
        redis
            .keys()
            .await
            .iter()
            .all(|k| !k.starts_with("refused:"))
    );

    // The same per item of a batch.
    let cache = redis.cache("rows");
    assert_eq!(rows(&cache, &batch_runs, vec![1, 2, 3]).await.len(), 3);
    assert_eq!(all_stale(&redis, "rows").await.len(), 3);
    let refreshed = rows(&cache, &batch_runs, vec![1, 2, 3]).await;
    assert_eq!(refreshed, [(1, 1), (3, 3)].into());
    assert_eq!(
        redis
            .keys()
            .await
            .iter()
            .filter(|k| k.starts_with("rows:"))
            .count(),
        2
    );
}

// `lock = false` and an invalidation before its lock.

static PRICE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(10);

#[redis_cache(ttl = 300, lock = false, skip(cache, other), cache = cache, name = "hostile::price")]
async fn price(cache: &Cache, other: &Cache, id: u64) -> u64 {
    // The function reads the data...
    let read = PRICE.load(SeqCst);
    // ...then, before it yields (so before its lock, asked for alongside, reaches Redis), the
    // data changes and another process invalidates the entry.
    PRICE.store(20, SeqCst);
    let other = other.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(price_invalidate(&other, id))
    })
    .join()
    .unwrap()
    .unwrap();
    read
}

#[tokio::test]
async fn a_lock_false_computation_invalidated_before_its_lock_stores_nothing() {
    let redis = RedisServer::start();
    let (cache, other) = (redis.cache("unlocked"), redis.cache("unlocked"));
    // The old value is returned (it was read before the change)...
    assert_eq!(price(&cache, &other, 1).await, 10);
    cache.flush().await;
    // ...but not stored: the next call computes the new one.
    assert_eq!(PRICE.load(SeqCst), 20);
    PRICE.store(30, SeqCst);
    let stats = redis_cached::stats_for("hostile::price").unwrap();
    assert_eq!(stats.writes, 0, "{stats:?}");
}

// Replies and keys another writer left.

#[redis_cache(ttl = 300, tags("item:{id}", "items"), skip(cache), cache = cache)]
async fn tagged_item(cache: &Cache, id: u64) -> u64 {
    id
}

#[tokio::test]
async fn a_key_under_the_prefix_that_is_not_utf8_does_not_stop_a_clear() {
    let redis = RedisServer::start();
    let cache = redis.cache("bytes");
    tagged_item(&cache, 1).await;
    let mut conn = redis.connection().await;
    let () = redis::cmd("SET")
        .arg(b"bytes:\xff\xfe:junk".as_slice())
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    let removed = cache.clear().await.expect("the clear goes through");
    assert!(removed >= 2, "{removed}");
    let left: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg("bytes:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_tag_invalidation_deletes_only_keys_of_its_own_cache() {
    let redis = RedisServer::start();
    let (cache, other) = (redis.cache("own"), redis.cache("neighbour"));
    tagged_item(&cache, 1).await;
    tagged_item(&other, 1).await;
    let mut conn = redis.connection().await;
    // Someone adds other keys to the tag's set: another service's data, another cache's
    // entry, garbage bytes.
    let () = redis::cmd("SET")
        .arg("important-user-data")
        .arg("keep me")
        .query_async(&mut conn)
        .await
        .unwrap();
    let neighbour_entry = redis
        .keys()
        .await
        .into_iter()
        .find(|k| k.starts_with("neighbour:") && !k.contains("#tag"))
        .unwrap();
    let far = "99999999999999";
    let _: i64 = redis::cmd("ZADD")
        .arg("own:#tag:{item:1}")
        .arg(far)
        .arg("important-user-data")
        .arg(far)
        .arg(&neighbour_entry)
        .arg(far)
        .arg(b"\xff\xfe".as_slice())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        cache.invalidate_tag("item:1").await,
        Ok(1),
        "its own entry only"
    );
    let left = redis.keys().await;
    assert!(
        left.contains(&"important-user-data".to_string()),
        "{left:?}"
    );
    assert!(left.contains(&neighbour_entry), "{left:?}");
    // The foreign members left the set.
    let members: i64 = redis
        .command(&["ZCARD", "own:#tag:{item:1}"])
        .await
        .unwrap();
    assert_eq!(members, 0);
}

#[tokio::test]
async fn a_tag_of_10_000_entries_is_read_in_pages_and_removed_whole() {
    let redis = RedisServer::start();
    let cache = redis.cache("big");
    for id in 0..10_000 {
        tagged_item(&cache, id).await;
    }
    assert_eq!(cache.invalidate_tag("items").await, Ok(10_000));
    let left: Vec<String> = redis
        .keys()
        .await
        .into_iter()
        .filter(|k| !k.contains(":#tag:"))
        .collect();
    assert!(left.is_empty(), "{} left", left.len());
    assert!(redis.keys().await.iter().all(|k| !k.ends_with(":snap")));
}

// A lying cluster node.

use redis_cache_tests::stub_node::{Redirect, StubNode, Trap, one_primary, slots_reply};

#[redis_cache(ttl = 300, skip(cache), cache = cache, name = "hostile::redirected")]
async fn redirected(cache: &Cache, id: u64) -> u64 {
    id
}

fn cluster_cache(port: u16, prefix: &str) -> Cache {
    Cache::builder()
        .cluster([format!("redis://app:secret@127.0.0.1:{port}")])
        .prefix(prefix)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_redirection_to_a_node_the_map_does_not_list_is_not_followed() {
    for redirect in [Redirect::Moved, Redirect::Ask] {
        let trap = Trap::start().await;
        let to = format!("127.0.0.1:{}", trap.port);
        let mut stub = StubNode::start(one_primary, redirect, to).await;
        let cache = cluster_cache(stub.port, "redirected");
        for id in 0..3 {
            assert_eq!(redirected(&cache, id).await, id, "{redirect:?}");
        }
        // The map is read again instead (the first read, then one after the redirection).
        stub.slot_reads_reach(2).await;
        // No connection, and so no credentials, went to the address the stub named.
        assert_eq!(trap.connections(), 0, "{redirect:?}");
    }
}

#[tokio::test]
async fn a_slot_map_naming_more_primaries_than_a_cluster_has_is_refused() {
    let trap = Trap::start().await;
    // 1001 primaries: the trap serves most slots, 1000 others one slot each.
    let trap_port = trap.port;
    let map = move |_own: u16| {
        let mut ranges: Vec<(u16, u16, u16)> = (0..1000).map(|i| (i, i, 1 + i)).collect();
        ranges.push((1000, 16383, trap_port));
        slots_reply(&ranges)
    };
    let mut stub = StubNode::start(map, Redirect::Moved, "127.0.0.1:1".into()).await;
    let cache = cluster_cache(stub.port, "many");
    for id in 0..3 {
        assert_eq!(redirected(&cache, id).await, id);
    }
    stub.slot_reads_reach(1).await;
    assert_eq!(trap.connections(), 0, "the map was refused");
}

// A value of the function's own that a read could not take.

#[derive(serde::Serialize, serde::Deserialize, Clone, PartialEq, Debug)]
struct Chain {
    next: Option<Box<Chain>>,
}

fn chain_of(links: u32) -> Chain {
    (0..links).fold(Chain { next: None }, |next, _| Chain {
        next: Some(Box::new(next)),
    })
}

#[redis_cache(ttl = 300, skip(cache), cache = cache, name = "hostile::chain")]
async fn chain(cache: &Cache, links: u32) -> Chain {
    chain_of(links)
}

#[tokio::test]
async fn a_value_too_deep_to_read_back_is_returned_but_not_stored() {
    let redis = RedisServer::start();
    let cache = redis.cache("deep");
    // Two levels a link (the struct, the `Option`): 10 links read back, 300 do not.
    assert_eq!(chain(&cache, 10).await, chain_of(10));
    for _ in 0..2 {
        assert_eq!(chain(&cache, 300).await, chain_of(300));
    }
    let stats = redis_cached::stats_for("hostile::chain").unwrap();
    // The deep one ran each time, was never stored, and so never read as invalid.
    assert_eq!((stats.executions, stats.writes), (3, 1), "{stats:?}");
    assert_eq!((stats.errors, stats.invalid), (2, 0), "{stats:?}");
    assert_eq!(redis.keys().await.len(), 1);
}
