//! `--cluster`: a hit on a 3-primary Redis Cluster, next to redis-rs's own cluster client doing
//! the same `GET` + decode (what a hand-written cluster cache would use), at 1 and 64 tasks.
//! Raw and hit alternate in rounds; the ratios' medians are printed with their targets.

use std::collections::BTreeMap;
use std::time::Duration;

use redis_cache_tests::cluster::RedisCluster;
use redis_cache_tests::fixtures::Product;

use crate::{measure, product, raw_key};

pub async fn run(last_core: &str, time: Duration, warmup: Duration, keys: u64, rounds: usize) {
    // Every node's main thread on the last core, the client on the others.
    let cluster = RedisCluster::start_with(
        redis_cache_tests::cluster::NODE_TIMEOUT_MS,
        &["--server_cpulist", last_core],
    );
    let cache = crate::patient(cluster.builder());
    let mut raw = cluster.connection().await;
    for id in 0..keys {
        let bytes = bincode::serde::encode_to_vec(Product::sample(id), bincode::config::standard())
            .expect("encode");
        let () = redis::cmd("SET")
            .arg(raw_key(id))
            .arg(bytes)
            .query_async(&mut raw)
            .await
            .expect("SET");
        assert_eq!(product(&cache, id).await.id, id);
    }
    cache.flush().await;
    println!(
        "a 3-primary cluster on loopback (every node pinned to the last core), {keys} keys; \
         {time:?} per case after {warmup:?} of warm-up, {rounds} rounds"
    );
    let mut ratios: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for tasks in [1, 64] {
        for round in 0..rounds {
            let mut rates = Vec::new();
            for hit in [false, true] {
                let (cache, raw) = (cache.clone(), raw.clone());
                let op = move |rng: &mut fastrand::Rng| {
                    let (cache, mut raw, id) = (cache.clone(), raw.clone(), rng.u64(0..keys));
                    async move {
                        if hit {
                            assert_eq!(product(&cache, id).await.id, id);
                        } else {
                            let bytes: Vec<u8> = redis::cmd("GET")
                                .arg(raw_key(id))
                                .query_async(&mut raw)
                                .await
                                .expect("raw GET");
                            let (value, _): (Product, usize) = bincode::serde::decode_from_slice(
                                &bytes,
                                bincode::config::standard(),
                            )
                            .expect("raw decode");
                            assert_eq!(value.id, id);
                        }
                    }
                };
                let op = std::sync::Arc::new(op);
                let warm = op.clone();
                measure::run(tasks, warmup, move |rng| warm(rng)).await;
                let sample = measure::run(tasks, time, move |rng| op(rng)).await;
                rates.push(sample.ops_per_sec());
            }
            println!(
                "  {tasks:>2} tasks, round {round}: raw cluster GET + decode {:.0}/s, hit {:.0}/s",
                rates[0], rates[1]
            );
            ratios.entry(tasks).or_default().push(rates[1] / rates[0]);
        }
    }
    println!();
    for (tasks, mut values) in ratios {
        values.sort_by(f64::total_cmp);
        let median = values[values.len() / 2];
        let target = if tasks == 1 { ">= 1.0" } else { ">= 0.97" };
        println!(
            "  cluster hit / raw cluster GET, {tasks:>2} tasks    median {median:>7.3} of \
             {values:.3?}  (target {target})"
        );
    }
}
