//! `--batch`: a batch function (`batch = ids`) next to what it replaces.
//!
//! - `raw MGET + decode, same entries`: redis-rs `MGET` of the 100 entries the batch reads (its
//!   keys, its envelopes) and their decode into the same `HashMap` the function returns: the
//!   floor of reading those values by hand, so the difference is the flow's own work;
//! - `raw MGET + decode, short keys`: the same values stored by hand under short keys without
//!   an envelope, for the whole price of the cache's key and header format;
//! - `batch hit`: a batch function asked for 100 ids, all stored;
//! - `100 single hits`: a loop of 100 calls of the single-item function sharing its entries;
//! - `batch hit, cluster`: the batch on a 3-primary cluster (its lookup is a pipeline of `GET`s
//!   per primary, sent at once), its servers pinned to the same core as the single one;
//! - `10 misses of 100`: 10 of the 100 invalidated before each call (untimed): the function's
//!   calls and keys, and the round trips the call made beyond the function (counted by the
//!   cache: one per lookup, lock and store step).
//!
//! Each case runs 1 task; the three hit cases alternate in rounds, and the report gives the
//! median of the rounds' ratios.

use std::collections::HashMap;
use std::time::Duration;

use redis_cache_tests::RedisServer;
use redis_cache_tests::cluster::RedisCluster;
use redis_cache_tests::fixtures::Product;
use redis_cached::{Cache, redis_cache};

use crate::measure;

/// Ids per call.
const BATCH: u64 = 100;
/// Keys stored (each call reads a random window of them).
const KEYS: u64 = 10_000;
/// Misses per call in the miss case.
const MISSES: u64 = 10;

#[redis_cache(ttl = 3600, batch = ids, skip(cache), cache = cache, name = "bench::item")]
async fn items(cache: &Cache, ids: Vec<u64>) -> HashMap<u64, Product> {
    ids.into_iter()
        .map(|id| (id, Product::sample(id)))
        .collect()
}

#[redis_cache(ttl = 3600, skip(cache), cache = cache, name = "bench::item")]
async fn item(cache: &Cache, id: u64) -> Option<Product> {
    Some(Product::sample(id))
}

/// The miss case's function: how many calls, and how many keys they computed.
#[redis_cache(ttl = 3600, batch = ids, skip(cache, computed), cache = cache, name = "bench::missed")]
async fn missed(
    cache: &Cache,
    computed: &std::sync::Mutex<Vec<usize>>,
    ids: Vec<u64>,
) -> HashMap<u64, Product> {
    computed.lock().unwrap().push(ids.len());
    ids.into_iter()
        .map(|id| (id, Product::sample(id)))
        .collect()
}

fn raw_key(id: u64) -> String {
    format!("raw:item:{id}")
}

fn window(rng: &mut fastrand::Rng) -> Vec<u64> {
    let start = rng.u64(0..KEYS - BATCH);
    (start..start + BATCH).collect()
}

pub async fn run(last_core: &str, time: Duration, rounds: usize) {
    // Every server's main thread on the last core, the client on the others.
    let pinned = ["--server_cpulist", last_core];
    let redis = RedisServer::start_with(&pinned);
    let cluster = RedisCluster::start_with(redis_cache_tests::cluster::NODE_TIMEOUT_MS, &pinned);
    let cache = crate::patient(Cache::builder().url(redis.url()));
    let on_cluster = crate::patient(cluster.builder());
    let mut raw = redis.connection().await;
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for &id in chunk {
            let bytes =
                bincode::serde::encode_to_vec(Product::sample(id), bincode::config::standard())
                    .unwrap();
            pipe.cmd("SET").arg(raw_key(id)).arg(bytes).ignore();
        }
        let () = pipe.query_async(&mut raw).await.expect("SET");
        items(&cache, chunk.to_vec()).await;
        items(&on_cluster, chunk.to_vec()).await;
    }
    // The entries the batch wrote, by id: the hand-written MGET of the same values reads them.
    let entry_of = std::sync::Arc::new(crate::entries_by_id(&mut raw, "bench:*").await);
    println!(
        "batch of {BATCH} ids over {KEYS} stored, 1 task, redis-server pinned to core {last_core}, \
         {time:?} per case, {rounds} rounds"
    );

    let mut ratios: HashMap<&str, Vec<f64>> = HashMap::new();
    for round in 0..rounds {
        let conn = raw.clone();
        let raw_sample = measure::run(1, time, move |rng| {
            let mut conn = conn.clone();
            let ids = window(rng);
            async move {
                let keys: Vec<String> = ids.iter().map(|id| raw_key(*id)).collect();
                let values: Vec<Vec<u8>> = redis::cmd("MGET")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .expect("MGET");
                // What the hand-written function returns: the same map.
                let decoded: HashMap<u64, Product> = ids
                    .iter()
                    .zip(&values)
                    .map(|(id, bytes)| {
                        let config = bincode::config::standard();
                        (
                            *id,
                            bincode::serde::decode_from_slice(bytes, config).unwrap().0,
                        )
                    })
                    .collect();
                assert_eq!(decoded.len(), BATCH as usize);
            }
        })
        .await;
        let (conn, entries) = (raw.clone(), entry_of.clone());
        let same_sample = measure::run(1, time, move |rng| {
            let (mut conn, ids, entries) = (conn.clone(), window(rng), entries.clone());
            async move {
                let keys: Vec<&String> = ids.iter().map(|id| &entries[id]).collect();
                let values: Vec<Vec<u8>> = redis::cmd("MGET")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .expect("MGET");
                let decoded: HashMap<u64, Product> = ids
                    .iter()
                    .zip(&values)
                    .map(|(id, bytes)| (*id, redis_cached::__private::bench::open(bytes).unwrap()))
                    .collect();
                assert_eq!(decoded.len(), BATCH as usize);
            }
        })
        .await;
        let c = cache.clone();
        let batch_sample = measure::run(1, time, move |rng| {
            let (cache, ids) = (c.clone(), window(rng));
            async move { assert_eq!(items(&cache, ids).await.len(), BATCH as usize) }
        })
        .await;
        let c = cache.clone();
        let loop_sample = measure::run(1, time, move |rng| {
            let (cache, ids) = (c.clone(), window(rng));
            async move {
                for id in ids {
                    assert!(item(&cache, id).await.is_some());
                }
            }
        })
        .await;
        let c = on_cluster.clone();
        let cluster_sample = measure::run(1, time, move |rng| {
            let (cache, ids) = (c.clone(), window(rng));
            async move { assert_eq!(items(&cache, ids).await.len(), BATCH as usize) }
        })
        .await;
        let per_sec = |s: &measure::Sample| s.ops_per_sec();
        println!(
            "round {round}: calls/s (client CPU per call) raw MGET short keys {:.0} ({:?}), same \
             entries {:.0} ({:?}), batch {:.0} ({:?}), 100 single hits {:.0} ({:?}), batch on \
             the cluster {:.0} ({:?})",
            per_sec(&raw_sample),
            raw_sample.cpu_per_call(),
            per_sec(&same_sample),
            same_sample.cpu_per_call(),
            per_sec(&batch_sample),
            batch_sample.cpu_per_call(),
            per_sec(&loop_sample),
            loop_sample.cpu_per_call(),
            per_sec(&cluster_sample),
            cluster_sample.cpu_per_call(),
        );
        for (name, ratio) in [
            (
                "batch hit / raw MGET, same entries",
                per_sec(&batch_sample) / per_sec(&same_sample),
            ),
            (
                "batch hit / raw MGET, short keys",
                per_sec(&batch_sample) / per_sec(&raw_sample),
            ),
            (
                "batch hit / 100 single hits",
                per_sec(&batch_sample) / per_sec(&loop_sample),
            ),
            (
                "cluster batch hit / one server",
                per_sec(&cluster_sample) / per_sec(&batch_sample),
            ),
        ] {
            ratios.entry(name).or_default().push(ratio);
        }
    }
    println!();
    for (name, target) in [
        ("batch hit / raw MGET, same entries", ">= 0.9"),
        (
            "batch hit / raw MGET, short keys",
            "the key and header format's price",
        ),
        ("batch hit / 100 single hits", ">= 10"),
        ("cluster batch hit / one server", ">= 0.8"),
    ] {
        let mut values = ratios.remove(name).unwrap_or_default();
        values.sort_by(f64::total_cmp);
        let median = values.get(values.len() / 2).copied().unwrap_or(f64::NAN);
        println!("  {name:<34} median {median:>7.3} of {values:.3?}  (target {target})");
    }
    misses(&cache).await;
}

/// 100 ids of which 10 were invalidated: the function's calls and keys, and the cache's round
/// trips per call.
async fn misses(cache: &Cache) {
    let computed = std::sync::Mutex::new(Vec::new());
    let mut rng = fastrand::Rng::with_seed(7);
    let calls = 200;
    missed(cache, &computed, (0..KEYS).collect()).await;
    computed.lock().unwrap().clear();
    let before = missed_stats();
    for _ in 0..calls {
        let ids = window(&mut rng);
        let gone: Vec<u64> = rng.choose_multiple(ids.iter().copied(), MISSES as usize);
        let removed = missed_invalidate(cache, gone).await.expect("invalidate");
        assert_eq!(removed, MISSES);
        assert_eq!(missed(cache, &computed, ids).await.len(), BATCH as usize);
    }
    let after = missed_stats();
    let computed = computed.lock().unwrap().clone();
    let round_trips = after.redis_latency.count - before.redis_latency.count;
    println!(
        "  {MISSES} misses of {BATCH}: {} calls of the function for {calls} calls, {} keys each; \
         {:.2} round trips per call beyond the function (target <= 3: lookup, locks, store)",
        computed.len(),
        computed.first().copied().unwrap_or(0),
        round_trips as f64 / f64::from(calls),
    );
    assert!(computed.iter().all(|&n| n == MISSES as usize));
}
