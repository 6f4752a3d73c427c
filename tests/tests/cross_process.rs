//! Entries are shared between processes: what one process stores, another reads as a hit.
//!
//! The functions live in `redis_cache_tests::fixtures`, compiled into both this test and the
//! `cache_writer` binary, which uses the default cache built from `REDIS_URL`.

use std::process::Command;
use std::sync::atomic::Ordering::SeqCst;

use redis_cache_tests::RedisServer;
use redis_cache_tests::fixtures::{SHARED_SQUARE_RUNS, shared_square};
use redis_cached::{set_default, stats_for};

const PREFIX: &str = "xproc";

/// Runs the helper binary with the given arguments; returns how often its body ran.
fn run_writer(redis: &RedisServer, args: &[&str]) -> u64 {
    let out = Command::new(env!("CARGO_BIN_EXE_cache_writer"))
        .args(args)
        .env("REDIS_URL", redis.url())
        .env("REDIS_CACHE_PREFIX", PREFIX)
        // The test deadlines: a slow reply on a loaded machine must not leave a value unstored.
        .env("REDIS_CONNECT_TIMEOUT_MS", "10000")
        .env("REDIS_COMMAND_TIMEOUT_MS", "10000")
        .output()
        .expect("run cache_writer");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_value_written_by_another_process_is_read_and_vice_versa() {
    let redis = RedisServer::start();
    set_default(redis.cache(PREFIX)).expect("first and only default in this test binary");

    // Another process computes and stores 1, 2, 3.
    assert_eq!(run_writer(&redis, &["1", "2", "3"]), 3);
    // This process reads them without running the body.
    for x in 1..=3 {
        assert_eq!(shared_square(x).await, x * x);
    }
    assert_eq!(SHARED_SQUARE_RUNS.load(SeqCst), 0);
    let stats = stats_for("redis_cache_tests::fixtures::shared_square").unwrap();
    assert_eq!((stats.hits, stats.misses), (3, 0));

    // And what this process stores, a fresh process reads.
    assert_eq!(shared_square(9).await, 81);
    assert_eq!(SHARED_SQUARE_RUNS.load(SeqCst), 1);
    assert_eq!(run_writer(&redis, &["9", "3"]), 0);
}
