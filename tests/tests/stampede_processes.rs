//! Stampede protection across OS processes: the per-key Redis lock.
//!
//! The workers are the `stampede_worker` binary (see `redis_cache_tests::stampede`); they are
//! released together by a line on their stdin once every one of them is connected.

use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use redis_cache_tests::RedisServer;
use redis_cache_tests::fixtures::{COLD_RUNS, cold};
use redis_cache_tests::stampede::{HOT_ID, Report, Worker, WorkerConfig, run_workers};
use redis_cached::stats_for;

fn worker_program() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_stampede_worker"))
}

fn config(redis: &RedisServer, prefix: &str, callers: usize) -> WorkerConfig {
    WorkerConfig {
        url: redis.url(),
        prefix: prefix.to_string(),
        callers,
        work_ms: 300,
        lease_ms: 3_000,
        hang: false,
    }
}

#[test]
fn four_processes_of_250_callers_on_a_cold_key_run_the_function_once() {
    let redis = RedisServer::start();
    let configs = vec![config(&redis, "procs", 250); 4];
    let reports = run_workers(worker_program(), &[], &configs);
    let total = Report::total(&reports);
    assert_eq!(total.calls, 1000);
    assert_eq!(
        total.executions, 1,
        "one computation in all processes: {reports:#?}"
    );
    assert_eq!(
        total.values.len(),
        1,
        "every caller got the same value: {:?}",
        total.values
    );
    // One process computed; the others waited (once each, on behalf of all their callers) or,
    // if they started late, found the value stored.
    assert_eq!(total.misses, 1);
    assert!(total.lock_waits <= 3, "{reports:#?}");
    assert_eq!(total.hits + total.coalesced + total.misses, 1000);
}

#[tokio::test]
async fn a_killed_lock_holder_blocks_the_key_for_one_lease_at_most() {
    let redis = RedisServer::start();
    // Long enough that, once the holder is dead, this process surely finds its lock still there
    // however slow the machine; its lock wait is longer still.
    let holder_config = WorkerConfig {
        callers: 1,
        lease_ms: 3_000,
        hang: true,
        ..config(&redis, "killed", 1)
    };
    let mut holder = Worker::start(worker_program(), &[], &holder_config);
    holder.go();
    // The holder took the lock and is inside the function, renewing it: kill it there. It never
    // releases.
    holder.expect_line("computing");
    let lock_keys: Vec<String> = redis
        .keys()
        .await
        .into_iter()
        .filter(|k| k.ends_with(":lock"))
        .collect();
    assert_eq!(lock_keys.len(), 1, "the holder's lock");
    holder.kill();

    // This process waits for the lease to lapse, takes the lock and computes.
    let cache = holder_config
        .builder()
        .lock_wait(Duration::from_secs(60))
        .build()
        .unwrap();
    let value = cold(&cache, HOT_ID).await;
    assert!(
        value.contains(&format!("pid {}", std::process::id())),
        "{value}"
    );
    assert_eq!(COLD_RUNS.load(SeqCst), 1);
    let stats = stats_for("fixtures::cold").unwrap();
    assert_eq!(
        (stats.misses, stats.lock_waits, stats.lock_timeouts),
        (1, 1, 0)
    );
    assert!(
        redis.keys().await.iter().all(|k| !k.ends_with(":lock")),
        "released after storing"
    );
}
