// Batch functions (`batch = ids`): one round trip for what is cached, one call of the function
// for the misses only.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use cache_runtime::{Cache, redis_cache, stats_for};
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
    let keys = Arc::new(Keys::default());
    let calls: Vec<_> = (0..8u64)
        .map(|call| {
            let (cache, keys) = (cache.clone(), keys.clone());
            tokio::spawn(async move {
                let ids: BTreeSet<u64> = (call * 10..call * 10 + 40).collect();
                let got = overlapping(&cache, &keys, ids.clone()).await;
                assert_eq!(got, ids.iter().map(|id| (*id, id * 10)).collect());
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
    assert_eq!(tagged_invalidate(&cache, &keys, vec![4, 5]).await.unwrap(), 2);
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
