// Batch functions (`batch = ids`): one round trip for what is cached, one call of the function
// for the misses only.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use redis_cached::{Cache, redis_cache, stats_for};
use redis_cache_tests::{Keys, Runs};
use serde::{Deserialize, Serialize};

/// A batch function's name as stats show it.
fn batch_name(function: &str) -> String {
    format!("{}::{function} (batch)", module_path!())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    id: u64,
    label: String,
}

fn item(id: u64) -> Item {
    Item {
        id,
        label: format!("item {id}"),
    }
}

/// Every key found, but those divisible by 7 ("not found").
fn found(keys: &[u64]) -> HashMap<u64, Item> {
    keys.iter()
        .filter(|id| *id % 7 != 0)
        .map(|id| (*id, item(*id)))
        .collect()
}

fn expected(ids: impl IntoIterator<Item = u64>) -> HashMap<u64, Item> {
    let ids: Vec<u64> = ids.into_iter().collect();
    found(&ids)
}

fn all(ids: impl IntoIterator<Item = u64>) -> HashMap<u64, Item> {
    ids.into_iter().map(|id| (id, item(id))).collect()
}

#[redis_cache(ttl = 300, batch = ids, skip(cache, keys), cache = cache)]
async fn partition(cache: &Cache, keys: &Keys, ids: Vec<u64>) -> HashMap<u64, Item> {
    keys.record(&ids);
    all(ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_runs_once_with_exactly_the_missing_keys() {
    let redis = start();
    let cache = redis.cache("batch-partition");
    let keys = Keys::default();
    assert_eq!(partition(&cache, &keys, (1..=30).collect()).await, all(1..=30));
    assert_eq!(partition(&cache, &keys, (1..=100).collect()).await, all(1..=100));
    assert_eq!(
        keys.calls(),
        [(1..=30).collect::<Vec<_>>(), (31..=100).collect()],
        "the second call computed 31..=100 only"
    );
    // In another order, and with duplicates: each key once, all hits.
    let again: Vec<u64> = (1..=100).rev().chain(1..=10).collect();
    assert_eq!(partition(&cache, &keys, again).await, all(1..=100));
    assert_eq!(keys.calls().len(), 2, "the third call ran nothing");
    let stats = stats_for(&batch_name("partition")).expect("registered");
    // Outcomes count items: 30 misses; 30 hits and 70 misses; 100 hits.
    assert_eq!(stats.batch_calls, 3);
    assert_eq!(stats.batch_keys, 230);
    assert_eq!((stats.hits, stats.misses), (130, 100));
    assert_eq!(stats.writes, 100, "one entry per item");
    assert_eq!(stats.executions, 2);
    assert_eq!(stats.fallbacks + stats.errors + stats.invalid, 0);
}

#[redis_cache(ttl = 300, batch = ids, skip(cache, keys), cache = cache)]
async fn overlapping(cache: &Cache, keys: &Keys, ids: BTreeSet<u64>) -> BTreeMap<u64, u64> {
    keys.record(&ids);
    tokio::time::sleep(Duration::from_millis(20)).await;
    ids.iter().map(|id| (*id, id * 10)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_calls_in_one_process_compute_each_key_once() {
    let redis = start();
    let cache = redis.cache("batch-overlap");
    eight_overlapping_calls_compute_each_key_once(&cache, |cache, keys, ids| async move {
        overlapping(&cache, &keys, ids).await
    })
    .await;
}

/// Eight calls of 40 keys each, every call overlapping the next by 30, spawned at once: every
/// answer is complete and right, and each of the 110 keys was computed once (`call` records the
/// keys the function is called with in `keys`).
async fn eight_overlapping_calls_compute_each_key_once<F, Fut>(cache: &Cache, call: F)
where
    F: Fn(Cache, Arc<Keys>, BTreeSet<u64>) -> Fut,
    Fut: std::future::Future<Output = BTreeMap<u64, u64>> + Send + 'static,
{
    let keys = Arc::new(Keys::default());
    let calls: Vec<_> = (0..8u64)
        .map(|n| {
            let ids: BTreeSet<u64> = (n * 10..n * 10 + 40).collect();
            let answer = call(cache.clone(), keys.clone(), ids.clone());
            tokio::spawn(async move {
                assert_eq!(answer.await, ids.iter().map(|id| (*id, id * 10)).collect());
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    let per_key = keys.per_key();
    assert_eq!(per_key.len(), 110, "keys 0..110");
    assert!(
        per_key.values().all(|&n| n == 1),
        "each key computed once: {per_key:?}"
    );
}

/// A single-item function and a batch function sharing entries: same `name`, the element as the
/// key argument, and the batch's values as what the single function returns in `Some`.
#[redis_cache(ttl = 300, skip(cache, runs), cache = cache, name = "suite::shared_item")]
async fn shared_one(cache: &Cache, runs: &Runs, id: u64) -> Option<Item> {
    runs.tick();
    found(&[id]).remove(&id)
}

#[redis_cache(ttl = 300, batch = ids, skip(cache, keys), cache = cache, name = "suite::shared_item")]
async fn shared_many(cache: &Cache, keys: &Keys, ids: &[u64]) -> HashMap<u64, Item> {
    keys.record(ids);
    found(ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_and_a_single_item_function_share_entries_both_ways() {
    let redis = start();
    let cache = redis.cache("batch-share");
    let (runs, keys) = (Runs::default(), Keys::default());
    // Single first: the batch finds 2 and 3.
    assert_eq!(shared_one(&cache, &runs, 2).await, Some(item(2)));
    assert_eq!(shared_one(&cache, &runs, 3).await, Some(item(3)));
    assert_eq!(
        shared_many(&cache, &keys, &[1, 2, 3, 4]).await,
        expected([1, 2, 3, 4])
    );
    assert_eq!(keys.calls(), [vec![1, 4]]);
    // Batch first: the single function finds 1 and 4.
    assert_eq!(shared_one(&cache, &runs, 1).await, Some(item(1)));
    assert_eq!(shared_one(&cache, &runs, 4).await, Some(item(4)));
    assert_eq!(runs.count(), 2, "only 2 and 3 ran alone");
}

#[redis_cache(ttl = 300, batch = ids, skip(cache, keys), cache = cache)]
async fn forgotten(cache: &Cache, keys: &Keys, ids: Vec<u64>) -> HashMap<u64, Item> {
    keys.record(&ids);
    found(&ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_function_does_not_return_is_absent_and_not_stored() {
    let redis = start();
    let cache = redis.cache("batch-absent");
    let keys = Keys::default();
    for _ in 0..2 {
        let got = forgotten(&cache, &keys, vec![6, 7, 8, 14]).await;
        assert_eq!(got, expected([6, 7, 8, 14]));
        assert_eq!(got.len(), 2);
    }
    assert_eq!(keys.calls(), [vec![6, 7, 8, 14], vec![7, 14]]);
    assert_eq!(redis.keys_matching("*batch-absent*").await.len(), 2);
}

/// The same with errors: a batch returning `Result<HashMap<K, V>, E>` shares the entries of a
/// single-item function returning `Result<V, E>`.
#[redis_cache(ttl = 300, skip(cache, runs), cache = cache, name = "suite::shared_result")]
async fn shared_result_one(cache: &Cache, runs: &Runs, id: u64) -> Result<Item, String> {
    runs.tick();
    Ok(item(id))
}

#[redis_cache(ttl = 300, batch = ids, skip(cache, keys), cache = cache, name = "suite::shared_result")]
async fn shared_result_many(
    cache: &Cache,
    keys: &Keys,
    ids: Vec<u64>,
) -> Result<HashMap<u64, Item>, String> {
    keys.record(&ids);
    Ok(all(ids))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_returning_a_result_shares_entries_with_a_single_item_result() {
    let redis = start();
    let cache = redis.cache("batch-share-result");
    let (runs, keys) = (Runs::default(), Keys::default());
    assert_eq!(shared_result_one(&cache, &runs, 2).await, Ok(item(2)));
    assert_eq!(shared_result_many(&cache, &keys, vec![1, 2]).await, Ok(all([1, 2])));
    assert_eq!(shared_result_one(&cache, &runs, 1).await, Ok(item(1)));
    assert_eq!((runs.count(), keys.calls()), (1, vec![vec![1]]));
}

#[redis_cache(ttl = 300, none_ttl = 60, batch = ids, skip(cache, keys), cache = cache)]
async fn remembered(cache: &Cache, keys: &Keys, ids: Vec<u64>) -> HashMap<u64, Item> {
    keys.record(&ids);
    found(&ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_none_ttl_a_missing_key_is_remembered_for_none_ttl() {
    let redis = start();
    let cache = redis.cache("batch-none");
    let keys = Keys::default();
    assert_eq!(remembered(&cache, &keys, vec![6, 7, 8, 14]).await, expected([6, 7, 8, 14]));
    assert_eq!(remembered(&cache, &keys, vec![6, 7, 8, 14]).await, expected([6, 7, 8, 14]));
    assert_eq!(keys.calls().len(), 1, "the missing keys were remembered");
    let mut conn = redis.connection().await;
    let entries = redis.keys_matching("*batch-none*").await;
    let mut ttls = Vec::new();
    for key in entries.iter().filter(|k| !k.ends_with(":lock")) {
        let pttl: i64 = redis::cmd("PTTL").arg(key).query_async(&mut conn).await.unwrap();
        ttls.push(pttl);
    }
    ttls.sort_unstable();
    assert_eq!(ttls.len(), 4, "{entries:?}");
    // Two "not found" markers for at most a minute (jittered), two values for at most 300 s.
    assert!(ttls[..2].iter().all(|t| (50_000..=60_000).contains(t)), "{ttls:?}");
    assert!(ttls[2..].iter().all(|t| (250_000..=300_000).contains(t)), "{ttls:?}");
}

#[redis_cache(
    ttl = |item: &Item| Duration::from_secs(100 + item.id),
    unless = |item: &Item| item.id == 3,
    batch = ids,
    jitter = 0.0,
    skip(cache, keys),
    cache = cache
)]
async fn per_item(cache: &Cache, keys: &Keys, ids: HashSet<u64>) -> HashMap<u64, Item> {
    keys.record(&ids);
    ids.iter().map(|id| (*id, item(*id))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_and_unless_apply_to_each_item() {
    let redis = start();
    let cache = redis.cache("batch-rules");
    let keys = Keys::default();
    let ids: HashSet<u64> = [1, 2, 3].into();
    assert_eq!(per_item(&cache, &keys, ids.clone()).await.len(), 3);
    assert_eq!(per_item(&cache, &keys, ids).await.len(), 3);
    assert_eq!(keys.calls(), [vec![1, 2, 3], vec![3]], "3 was not stored");
    let mut conn = redis.connection().await;
    let mut ttls = Vec::new();
    for key in redis.keys_matching("*batch-rules*").await {
        let pttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut conn).await.unwrap();
        ttls.push(pttl / 1000);
    }
    ttls.sort_unstable();
    assert_eq!(ttls.len(), 2);
    assert!((95..=101).contains(&ttls[0]) && (96..=102).contains(&ttls[1]), "{ttls:?}");
}

#[redis_cache(ttl = 300, tags("item:{ids}", "items"), batch = ids, skip(cache, keys), cache = cache)]
async fn tagged(cache: &Cache, keys: &Keys, ids: Vec<u64>) -> HashMap<u64, u64> {
    keys.record(&ids);
    ids.iter().map(|id| (*id, *id)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_invalidation_act_per_item() {
    let redis = start();
    let cache = redis.cache("batch-tags");
    let keys = Keys::default();
    let all = || tagged(&cache, &keys, (1..=5).collect());
    assert_eq!(all().await.len(), 5);
    assert_eq!(cache.invalidate_tag("item:2").await.unwrap(), 1);
    assert_eq!(all().await.len(), 5);
    assert_eq!(tagged_invalidate(&cache, vec![4, 5]).await.unwrap(), 2);
    assert_eq!(all().await.len(), 5);
    assert_eq!(cache.invalidate_tag("items").await.unwrap(), 5);
    assert_eq!(all().await.len(), 5);
    assert_eq!(
        keys.calls(),
        [vec![1, 2, 3, 4, 5], vec![2], vec![4, 5], vec![1, 2, 3, 4, 5]]
    );
}

#[redis_cache(ttl = 300, batch = ids, skip(cache, keys), cache = cache)]
async fn failing(
    cache: &Cache,
    keys: &Keys,
    ids: Vec<u64>,
    fail: bool,
) -> Result<HashMap<u64, u64>, String> {
    keys.record(&ids);
    match fail {
        true => Err(format!("{} keys failed", ids.len())),
        false => Ok(ids.iter().map(|id| (*id, *id + 1)).collect()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_is_returned_and_stores_nothing() {
    let redis = start();
    let cache = redis.cache("batch-err");
    let keys = Keys::default();
    assert_eq!(
        failing(&cache, &keys, vec![1, 2], true).await,
        Err("2 keys failed".to_string())
    );
    assert!(redis.keys_matching("*batch-err*").await.is_empty());
    assert_eq!(
        failing(&cache, &keys, vec![1, 2], false).await,
        Ok([(1, 2), (2, 3)].into())
    );
    assert_eq!(keys.calls().len(), 2);
}

#[redis_cache(ttl = 300, batch = ids, skip(cache, runs), cache = cache)]
async fn empty(cache: &Cache, runs: &Runs, ids: Vec<u64>) -> HashMap<u64, u64> {
    runs.tick();
    ids.iter().map(|id| (*id, *id)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_batch_sends_nothing_and_calls_nothing() {
    let redis = start_own();
    let cache = redis.cache("batch-empty");
    let runs = Runs::default();
    let before = redis.cache_commands();
    assert!(empty(&cache, &runs, Vec::new()).await.is_empty());
    assert_eq!(runs.count(), 0);
    assert_eq!(redis.cache_commands(), before);
}

static EXTRA: AtomicBool = AtomicBool::new(false);

#[redis_cache(ttl = 300, batch = ids, skip(cache), cache = cache)]
async fn generous(cache: &Cache, ids: Vec<u64>) -> HashMap<u64, u64> {
    let mut map: HashMap<u64, u64> = ids.iter().map(|id| (*id, *id)).collect();
    if EXTRA.load(SeqCst) {
        map.insert(1000, 1000);
    }
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_not_asked_for_are_returned_but_not_stored() {
    let redis = start();
    let cache = redis.cache("batch-extra");
    EXTRA.store(true, SeqCst);
    let got = generous(&cache, vec![1, 2]).await;
    assert_eq!(got.len(), 3);
    assert_eq!(redis.keys_matching("*batch-extra*").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_calls_from_two_processes_compute_each_key_once() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    let redis = start();
    let prefix = redis.prefix("batch-procs");
    let mut workers: Vec<_> = ["forward", "reversed"]
        .into_iter()
        .map(|order| {
            let mut child = Command::new(env!("CARGO_BIN_EXE_batch_worker"))
                .arg(order)
                .arg(&prefix)
                .args(redis.urls())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a worker");
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let ready = lines.next().expect("a line").expect("stdout");
            assert_eq!(ready, "ready");
            (child, lines)
        })
        .collect();
    // Released together: the start line is an event.
    for (child, _) in &mut workers {
        let stdin = child.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }
    let mut per_key = BTreeMap::<u64, u64>::new();
    for (mut child, mut lines) in workers {
        let line = lines.next().expect("a report").expect("stdout");
        let computed = line.strip_prefix("computed ").expect("computed ...");
        for id in computed.split(',').filter(|id| !id.is_empty()) {
            *per_key.entry(id.parse().unwrap()).or_default() += 1;
        }
        assert!(child.wait().unwrap().success(), "a worker failed");
    }
    assert_eq!(per_key.len(), 120, "keys 0..120: {per_key:?}");
    assert!(
        per_key.values().all(|&n| n == 1),
        "each key computed once in both processes: {per_key:?}"
    );
}

#[redis_cache(ttl = 300, batch = ids, skip(cache, runs), cache = cache, name = "suite::coalesced")]
async fn slow_many(cache: &Cache, runs: &Runs, ids: Vec<u64>) -> HashMap<u64, u64> {
    runs.tick();
    GATE_MANY.wait().await;
    ids.iter().map(|id| (*id, id + 100)).collect()
}

#[redis_cache(ttl = 300, skip(cache, runs), cache = cache, name = "suite::coalesced")]
async fn slow_one(cache: &Cache, runs: &Runs, id: u64) -> Option<u64> {
    runs.tick();
    Some(id + 100)
}

static GATE_MANY: redis_cache_tests::Gate = redis_cache_tests::Gate::new();

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_item_call_awaits_a_batch_computing_its_key() {
    let redis = start();
    let cache = redis.cache("batch-coalesce");
    let (runs, one_runs) = (Arc::new(Runs::default()), Runs::default());
    let batch = {
        let (cache, runs) = (cache.clone(), runs.clone());
        tokio::spawn(async move { slow_many(&cache, &runs, vec![1, 2, 3]).await })
    };
    // The batch leads its keys once its body runs (it is held there).
    GATE_MANY.until_arrived(1).await;
    let single = slow_one(&cache, &one_runs, 2);
    let opened = async {
        tokio::task::yield_now().await;
        GATE_MANY.open();
    };
    let (value, ()) = tokio::join!(single, opened);
    assert_eq!(value, Some(102));
    assert_eq!(batch.await.unwrap().len(), 3);
    assert_eq!(runs.count(), 1);
    assert_eq!(one_runs.count(), 0, "the single call shared the batch's value");
}

#[redis_cache(ttl = 300, batch = ids, skip(cache, keys), cache = cache)]
async fn typed(cache: &Cache, keys: &Keys, ids: Vec<u64>) -> HashMap<u64, u64> {
    keys.record(&ids);
    ids.into_iter().map(|id| (id, id + 1)).collect()
}

/// Another Redis type under an item's key (another program's hash) is a miss that the store
/// overwrites, on one server (`MGET` answers nil) and on a cluster (`GET` answers `WRONGTYPE`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_type_under_an_item_key_is_recomputed_and_overwritten() {
    let redis = start();
    let cache = redis.cache("batch-type");
    let keys = Keys::default();
    typed(&cache, &keys, vec![2]).await;
    let key = redis.entries().await.pop().expect("the entry of 2");
    typed(&cache, &keys, vec![1, 3]).await;
    let _: () = redis.command(&["DEL", &key]).await.unwrap();
    let _: () = redis.command(&["HSET", &key, "f", "v"]).await.unwrap();
    assert_eq!(typed(&cache, &keys, vec![1, 2, 3]).await, [(1, 2), (2, 3), (3, 4)].into());
    assert_eq!(keys.calls(), vec![vec![2], vec![1, 3], vec![2]]);
    let kind: String = redis.command(&["TYPE", &key]).await.unwrap();
    assert_eq!(kind, "string", "overwritten");
    let stats = stats_for(&batch_name("typed")).unwrap();
    assert_eq!((stats.fallbacks, stats.errors), (0, 0), "{stats:?}");
}

static HELD_ONE: redis_cache_tests::Gate = redis_cache_tests::Gate::new();

/// Three functions sharing entries: one to learn each id's key, one held at its gate (another
/// process computing), one batch.
#[redis_cache(ttl = 300, skip(cache), cache = cache, name = "suite::held_item")]
async fn held_plain(cache: &Cache, id: u64) -> Option<u64> {
    Some(id)
}

#[redis_cache(ttl = 300, skip(cache), cache = cache, name = "suite::held_item")]
async fn held_one(cache: &Cache, id: u64) -> Option<u64> {
    HELD_ONE.wait().await;
    Some(id)
}

#[redis_cache(ttl = 300, batch = ids, skip(cache, keys), cache = cache, name = "suite::held_item")]
async fn held_many(cache: &Cache, keys: &Keys, ids: Vec<u64>) -> HashMap<u64, u64> {
    keys.record(&ids);
    ids.into_iter().map(|id| (id, id)).collect()
}

/// A batch waiting for another process's key keeps the locks it took before it (in key order)
/// alive: their stores are not fenced off, and nothing is computed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_keeps_its_locks_alive_while_it_waits_for_another_process() {
    let redis = start();
    let other = redis.cache("batch-renew");
    // Which id's entry sorts last: the batch takes every other lock before waiting for it.
    let mut last = (String::new(), 0);
    for id in 1..=20 {
        let before: HashSet<String> = redis.entries().await.into_iter().collect();
        held_plain(&other, id).await;
        let key = redis
            .entries()
            .await
            .into_iter()
            .find(|key| !before.contains(key))
            .expect("a new entry");
        last = last.max((key, id));
    }
    other.clear().await.unwrap();
    let waited_for = last.1;
    let holder = tokio::spawn({
        let other = other.clone();
        async move { held_one(&other, waited_for).await }
    });
    HELD_ONE.until_arrived(1).await;
    // A lease of 300 ms, renewed every 100 ms while held.
    let cache = redis
        .builder()
        .prefix(redis.prefix("batch-renew"))
        .lock_lease(Duration::from_millis(300))
        .lock_wait(Duration::from_secs(60))
        .build()
        .unwrap();
    let keys = Arc::new(Keys::default());
    let batch = tokio::spawn({
        let (cache, keys) = (cache.clone(), keys.clone());
        async move { held_many(&cache, &keys, (1..=20).collect()).await }
    });
    let channels = format!("{}:*", redis.prefix("batch-renew"));
    redis_cache_tests::eventually("the batch waits for the held key", || {
        redis.every_server().iter().any(|server| {
            !server
                .cli(&["PUBSUB", "CHANNELS", &channels])
                .trim()
                .is_empty()
        })
    })
    .await;
    // The scenario itself, not a synchronization: the batch waits longer than three leases.
    tokio::time::sleep(Duration::from_secs(1)).await;
    HELD_ONE.open();
    assert_eq!(holder.await.unwrap(), Some(waited_for));
    assert_eq!(batch.await.unwrap(), (1..=20).map(|id| (id, id)).collect());
    let computed: Vec<u64> = (1..=20).filter(|&id| id != waited_for).collect();
    assert_eq!(keys.calls(), vec![computed], "the held key was the other's");
    cache.flush().await;
    let stats = stats_for("suite::held_item (batch)").unwrap();
    assert_eq!((stats.writes, stats.fenced), (19, 0), "{stats:?}");
}

/// Moves the logical expiry of every entry matching `pattern` into the past (the envelope's
/// "fresh until", bytes 16..24): they are then in their stale window, without waiting for it.
async fn make_stale(redis: &redis_cache_tests::deployment::Deployment, pattern: &str) -> usize {
    let mut conn = redis.connection().await;
    let past = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 1_000;
    let keys: Vec<String> = redis
        .keys_matching(pattern)
        .await
        .into_iter()
        .filter(|key| !key.ends_with(":lock"))
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
    keys.len()
}

#[redis_cache(ttl = 300, stale = 300, batch = ids, skip(cache, runs), cache = cache)]
async fn stale_inline(cache: &Cache, runs: &Runs, ids: Vec<u64>) -> HashMap<u64, u64> {
    runs.tick();
    ids.iter().map(|id| (*id, id * 1000 + runs.count())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_items_are_refreshed_in_the_same_call_as_the_misses() {
    let redis = start();
    let cache = redis.cache("batch-stale");
    let runs = Runs::default();
    assert_eq!(stale_inline(&cache, &runs, vec![1, 2]).await, [(1, 1001), (2, 2001)].into());
    assert_eq!(make_stale(&redis, "*batch-stale*").await, 2);
    // 1 and 2 are stale, 3 is missing: one call computes the three.
    let got = stale_inline(&cache, &runs, vec![1, 2, 3]).await;
    assert_eq!(got, [(1, 1002), (2, 2002), (3, 3002)].into());
    assert_eq!(runs.count(), 2);
    // Stored fresh: the next call is all hits.
    assert_eq!(stale_inline(&cache, &runs, vec![1, 2, 3]).await, got);
    assert_eq!(runs.count(), 2);
}

static BACKGROUND_GATE: redis_cache_tests::Gate = redis_cache_tests::Gate::new();

#[redis_cache(
    ttl = 300,
    stale = 300,
    refresh = "background",
    batch = ids,
    skip(cache, runs),
    cache = cache
)]
async fn stale_background(cache: Cache, runs: Arc<Runs>, ids: Vec<u64>) -> HashMap<u64, u64> {
    runs.tick();
    if runs.count() > 1 {
        BACKGROUND_GATE.wait().await;
    }
    ids.iter().map(|id| (*id, id * 1000 + runs.count())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_refresh_background_stale_items_are_served_at_once_and_refreshed_in_a_task() {
    let redis = start();
    let cache = redis.cache("batch-bg");
    let runs = Arc::new(Runs::default());
    let first = stale_background(cache.clone(), runs.clone(), vec![1, 2]).await;
    assert_eq!(first, [(1, 1001), (2, 2001)].into());
    assert_eq!(make_stale(&redis, "*batch-bg*").await, 2);
    // Served the stale values while the refresh is held inside the function: an inline refresh
    // would hang this call (bounded, so that would fail rather than hang the suite).
    let served = tokio::time::timeout(
        Duration::from_secs(60),
        stale_background(cache.clone(), runs.clone(), vec![1, 2]),
    )
    .await
    .expect("served without waiting for the refresh");
    assert_eq!(served, first);
    BACKGROUND_GATE.until_arrived(1).await;
    BACKGROUND_GATE.open();
    cache.flush().await;
    assert_eq!(runs.count(), 2);
    let refreshed = stale_background(cache.clone(), runs.clone(), vec![1, 2]).await;
    assert_eq!(refreshed, [(1, 1002), (2, 2002)].into());
    assert_eq!(runs.count(), 2, "the refreshed entries are hits");
}

#[redis_cache(ttl = 300, batch = ids, skip(cache, runs), cache = cache)]
async fn written_through(cache: &Cache, runs: &Runs, ids: Vec<u64>) -> HashMap<u64, u64> {
    runs.tick();
    ids.iter().map(|id| (*id, id * 1000 + runs.count())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_companion_recomputes_and_stores_every_key() {
    let redis = start();
    let cache = redis.cache("batch-wt");
    let runs = Runs::default();
    assert_eq!(written_through(&cache, &runs, vec![1, 2, 3]).await[&2], 2001);
    let refreshed = written_through_refresh(&cache, &runs, vec![2, 3]).await;
    assert_eq!(refreshed, [(2, 2002), (3, 3002)].into());
    let all = written_through(&cache, &runs, vec![1, 2, 3]).await;
    assert_eq!(all, [(1, 1001), (2, 2002), (3, 3002)].into());
    assert_eq!(runs.count(), 2);
}

#[redis_cache(ttl = 300, batch = ids, skip(cache, keys), cache = cache)]
async fn without_redis(cache: &Cache, keys: &Keys, ids: Vec<u64>) -> HashMap<u64, u64> {
    keys.record(&ids);
    ids.iter().map(|id| (*id, id * 3)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_function_runs_once_with_every_key() {
    let cache = redis_cache_tests::unreachable_cache("batch-down");
    let keys = Keys::default();
    for _ in 0..3 {
        let got = without_redis(&cache, &keys, vec![1, 2, 2, 3]).await;
        assert_eq!(got, [(1, 3), (2, 6), (3, 9)].into());
    }
    assert_eq!(keys.calls(), vec![vec![1, 2, 3]; 3], "one call each, every key once");
    let stats = stats_for(&batch_name("without_redis")).unwrap();
    assert_eq!(stats.fallbacks, 9);
    assert_eq!(stats.hits + stats.misses, 0);
}

#[redis_cache(ttl = 300, batch = ids, skip(cache, keys), cache = cache)]
async fn overlapping_down(
    cache: &Cache,
    keys: &Keys,
    ids: BTreeSet<u64>,
) -> BTreeMap<u64, u64> {
    keys.record(&ids);
    // Long enough for the other calls to start while this one computes.
    tokio::time::sleep(Duration::from_millis(20)).await;
    ids.iter().map(|id| (*id, id * 10)).collect()
}

/// Without Redis there are no locks: the calls of one process still compute each key once (a
/// call awaits the keys an older call leads). One thread, so the calls join in spawn order.
#[tokio::test]
async fn without_redis_overlapping_calls_in_one_process_compute_each_key_once() {
    let cache = redis_cache_tests::unreachable_cache("batch-down-overlap");
    eight_overlapping_calls_compute_each_key_once(&cache, |cache, keys, ids| async move {
        overlapping_down(&cache, &keys, ids).await
    })
    .await;
}

#[redis_cache(ttl = 300, batch = ids, skip(cache), cache = cache)]
async fn under_load(cache: &Cache, ids: Vec<u64>) -> HashMap<u64, u64> {
    ids.iter().map(|id| (*id, id * 7)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_every_answer_stays_complete_and_right() {
    let mut redis = start_own();
    let cache = redis
        .builder()
        .prefix("batch-kill")
        .command_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let load: Vec<_> = (0..8u64)
        .map(|task| {
            let (cache, stop, answered) = (cache.clone(), stop.clone(), answered.clone());
            tokio::spawn(async move {
                let mut round = 0u64;
                while !stop.load(SeqCst) {
                    let start = (task * 7 + round * 13) % 200;
                    let ids: Vec<u64> = (start..start + 25).collect();
                    let got = under_load(&cache, ids.clone()).await;
                    assert_eq!(got, ids.iter().map(|id| (*id, id * 7)).collect());
                    answered.fetch_add(1, SeqCst);
                    round += 1;
                }
            })
        })
        .collect();
    let until = |n: u64| {
        let answered = answered.clone();
        async move {
            while answered.load(SeqCst) < n {
                tokio::task::yield_now().await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), until(200)).await.unwrap();
    redis.kill();
    let after_kill = answered.load(SeqCst);
    tokio::time::timeout(Duration::from_secs(60), until(after_kill + 200))
        .await
        .expect("answers go on while Redis is gone");
    stop.store(true, SeqCst);
    for task in load {
        task.await.expect("every answer was complete and right");
    }
    let stats = stats_for(&batch_name("under_load")).unwrap();
    assert!(stats.fallbacks > 0, "{stats:?}");
}

#[redis_cache(ttl = 300, local = 1000, batch = ids, skip(cache, keys), cache = cache)]
async fn local_items(cache: &Cache, keys: &Keys, ids: Vec<u64>) -> HashMap<u64, Item> {
    keys.record(&ids);
    all(ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_local_a_batch_of_local_copies_sends_no_command() {
    let redis = start_own();
    let cache = redis.cache("batch-local");
    let keys = Keys::default();
    let ids: Vec<u64> = (1..=20).collect();
    assert_eq!(local_items(&cache, &keys, ids.clone()).await, all(1..=20));
    redis_cache_tests::local::coherent(&cache).await;
    // A Redis hit per key copies it (a copy made by the first read may be removed by the late
    // announcement of this process's own store; the next read copies it again).
    let name = batch_name("local_items");
    let local_hits = || stats_for(&name).unwrap().local_hits;
    let mut rounds = 0;
    while local_hits() < 20 {
        let before = local_hits();
        assert_eq!(local_items(&cache, &keys, ids.clone()).await, all(1..=20));
        rounds += 1;
        assert!(rounds < 100, "no full local answer in 100 calls");
        if local_hits() - before == 20 {
            break;
        }
    }
    let sent = redis.cache_commands();
    let before = local_hits();
    assert_eq!(local_items(&cache, &keys, ids).await, all(1..=20));
    assert_eq!(local_hits() - before, 20);
    assert_eq!(redis.cache_commands(), sent, "no command for a batch of local copies");
    assert_eq!(keys.calls().len(), 1);
}
