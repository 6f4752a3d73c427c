//! The same cached function on one server, a Redis Cluster and Sentinel, from one run: hit
//! throughput at 64 tasks, the connections the process holds, and a primary killed under load
//! (calls, errors, slowest call, time until the cache is used again).
//!
//! ```text
//! cargo run --release -p redis-cache-examples --example topologies [-- --secs 3]
//! cargo run --release -p redis-cache-examples --example topologies -- --hits 3
//! ```
//!
//! Every server runs on loopback, started and stopped by this program (`redis-server` and
//! `redis-cli` on PATH). The caches use the default timeouts and circuit breaker. `--hits N`
//! compares hit throughput only, one server against a cluster, N rounds of each in turn, with
//! every server's main thread pinned to the last core (`--server_cpulist`), away from the
//! client's one worker thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis_cache_examples::cli::Cli;
use redis_cache_tests::cluster::{FAILOVER_NODE_TIMEOUT_MS, RedisCluster};
use redis_cache_tests::failover::{self, FailoverReport, LOAD_KEYS, doubled};
use redis_cache_tests::sentinel::{MASTER_NAME, SentinelGroup};
use redis_cache_tests::{RedisServer, settled};
use redis_cached::Cache;

const TASKS: usize = 64;

struct Row {
    topology: &'static str,
    hits_per_sec: f64,
    connections: String,
    failover: FailoverReport,
}

const USAGE: &str = "\
The same cached function on one server, a Redis Cluster and Sentinel: hit throughput at 64
tasks, connections held, and a primary killed under load.

usage: cargo run --release --example topologies [-- --secs S] [--hits N]

options:
  --secs S     seconds of load per measurement (default 3)
  --hits N     only hit throughput, one server against a cluster, N rounds, servers pinned
  -h, --help   print this

Starts its own servers (redis-server and redis-cli on PATH) on loopback; reads no environment
variable.
";

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let cli = Cli::parse("topologies", USAGE, &[("--secs", true), ("--hits", true)]);
    let secs: f64 = cli.value("--secs").unwrap_or(3.0);
    let measure = Duration::from_secs_f64(secs);
    if let Some(rounds) = cli.value::<usize>("--hits") {
        return hits_only(rounds, measure).await;
    }
    let mut rows = Vec::new();

    {
        let mut server = RedisServer::start();
        let baseline = server.connected_clients();
        let cache = Cache::builder()
            .url(server.url())
            .prefix("topologies")
            .build()
            .expect("valid cache");
        let hits_per_sec = hit_rate(&cache, measure).await;
        let held = settled(1, || server.connected_clients() - baseline).await;
        // One server has nothing to fail over to: the figure is the outage and the recovery
        // once it is back (killed, then started again on its port a second later).
        let port = server.port();
        let restarted = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(1));
            RedisServer::start_at(port, &[])
        });
        let report =
            failover::under_load(&cache, TASKS, || server.kill(), Duration::from_secs(60)).await;
        drop(restarted.join().expect("restart"));
        rows.push(Row {
            topology: "single node (restarted after 1 s)",
            hits_per_sec,
            connections: format!("{held}"),
            failover: report,
        });
    }
    {
        let mut cluster = RedisCluster::start_with_node_timeout(FAILOVER_NODE_TIMEOUT_MS);
        let count = |c: &RedisCluster| {
            c.nodes()
                .iter()
                .map(|n| n.connected_clients())
                .sum::<usize>()
        };
        let baseline = count(&cluster);
        let cache = Cache::builder()
            .cluster(cluster.addresses())
            .prefix("topologies")
            .build()
            .expect("valid cache");
        let hits_per_sec = hit_rate(&cache, measure).await;
        let held = settled(3, || count(&cluster) - baseline).await;
        let victim = cluster.primary_of("topologies");
        let report = failover::under_load(
            &cache,
            TASKS,
            || cluster.nodes_mut()[victim].kill(),
            Duration::from_secs(60),
        )
        .await;
        rows.push(Row {
            topology: "cluster, 3 primaries + 3 replicas",
            hits_per_sec,
            connections: format!("{held} (one per primary)"),
            failover: report,
        });
    }
    {
        let mut group = SentinelGroup::start();
        let data =
            |g: &SentinelGroup| g.primary.connected_clients() + g.replica.connected_clients();
        let sentinels = |g: &SentinelGroup| {
            g.sentinels()
                .iter()
                .map(|s| s.connected_clients())
                .sum::<usize>()
        };
        let (data_before, sentinels_before) = (data(&group), sentinels(&group));
        let cache = Cache::builder()
            .sentinel(group.addresses(), MASTER_NAME)
            .prefix("topologies")
            .build()
            .expect("valid cache");
        let hits_per_sec = hit_rate(&cache, measure).await;
        let held = settled(1, || data(&group) - data_before).await;
        let to_sentinels = sentinels(&group) - sentinels_before;
        let report = failover::under_load(
            &cache,
            TASKS,
            || group.primary.kill(),
            Duration::from_secs(60),
        )
        .await;
        rows.push(Row {
            topology: "sentinel, primary + replica, 3 sentinels",
            hits_per_sec,
            connections: format!("{held} + {to_sentinels} to sentinels"),
            failover: report,
        });
    }

    println!(
        "\n| topology | hits/s at {TASKS} tasks | connections held | failover calls | errors | slowest call | cache used again after |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|");
    for row in &rows {
        let f = &row.failover;
        println!(
            "| {} | {:.0} | {} | {} | {} | {:.1?} | {:.2?} |",
            row.topology,
            row.hits_per_sec,
            row.connections,
            f.calls,
            f.errors,
            f.slowest,
            f.recovered_after
        );
    }
    println!(
        "\n(connections: with one pub/sub connection more once a call has waited on another process's lock)"
    );
}

/// Hit throughput of one server and of a cluster, `rounds` rounds alternating, every server
/// pinned to the last core.
async fn hits_only(rounds: usize, measure: Duration) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let last = (cores - 1).to_string();
    let pinned = ["--server_cpulist", last.as_str()];
    let server = RedisServer::start_with(&pinned);
    let cluster = RedisCluster::start_with(redis_cache_tests::cluster::NODE_TIMEOUT_MS, &pinned);
    let single = Cache::builder()
        .url(server.url())
        .prefix("topologies")
        .build()
        .expect("valid cache");
    let clustered = Cache::builder()
        .cluster(cluster.addresses())
        .prefix("topologies")
        .build()
        .expect("valid cache");
    println!("hits/s at {TASKS} tasks, one Tokio worker, servers pinned to core {last} of {cores}");
    println!("| round | one server | cluster (3 primaries) | cluster / one server |");
    println!("|---:|---:|---:|---:|");
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let one = hit_rate(&single, measure).await;
        let many = hit_rate(&clustered, measure).await;
        ratios.push(many / one);
        println!("| {round} | {one:.0} | {many:.0} | {:.3} |", many / one);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "median cluster / one server: {:.3}",
        ratios[ratios.len() / 2]
    );
}

/// Hits per second from [`TASKS`] tasks over [`LOAD_KEYS`] stored keys.
async fn hit_rate(cache: &Cache, measure: Duration) -> f64 {
    for id in 0..LOAD_KEYS {
        doubled(cache, id).await;
    }
    cache.flush().await;
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..TASKS as u64)
        .map(|task| {
            let (cache, stop, calls) = (cache.clone(), stop.clone(), calls.clone());
            tokio::spawn(async move {
                let mut id = task * 7919 % LOAD_KEYS;
                let mut done = 0;
                while !stop.load(Ordering::Relaxed) {
                    assert_eq!(doubled(&cache, id).await, id * 2);
                    id = (id + 1) % LOAD_KEYS;
                    done += 1;
                }
                calls.fetch_add(done, Ordering::Relaxed);
            })
        })
        .collect();
    let started = Instant::now();
    tokio::time::sleep(measure).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("load task");
    }
    calls.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}
