//! The stampede figures: how many times a cold hot key is computed, how long its callers wait,
//! and how many callers wait for the function under steady load, with and without early refresh.
//!
//! `cargo run --release --example stampede` (needs `redis-server` on PATH; it starts its own on a
//! free loopback port, and runs worker processes of itself).
//!
//! 1. One process, 1,000 concurrent callers of one cold key (the function works 100 ms).
//! 2. Four processes of 250 callers each, released together.
//!    For both: executions in total, and callers that waited longer than the function plus 10 ms.
//! 3. 30 seconds of steady load (33 tasks) on a key with a 5-second TTL and a 50 ms function,
//!    with early refresh in the call (the default), with early refresh in the background
//!    (`refresh = "background"`) and with `early_refresh = false`: the misses, and the calls
//!    that ran the function themselves (so waited for it), and the calls that took 50 ms or more
//!    (those, plus the stalls of a loaded machine).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use redis_cache_examples::cli::Cli;
use redis_cache_tests::RedisServer;
use redis_cache_tests::stampede::{Report, WorkerConfig, run_workers, worker};
use redis_cached::{Cache, redis_cache, stats_for};

const WORK_MS: u64 = 100;
const STEADY: Duration = Duration::from_secs(30);
const STEADY_WORK: Duration = Duration::from_millis(50);
const STEADY_TASKS: usize = 33;

static EXECUTIONS_XFETCH: AtomicU64 = AtomicU64::new(0);
static EXECUTIONS_PLAIN: AtomicU64 = AtomicU64::new(0);
static EXECUTIONS_BACKGROUND: AtomicU64 = AtomicU64::new(0);

#[redis_cache(ttl = 5, jitter = 0.0, skip(cache), cache = cache)]
async fn rate_with_early_refresh(cache: &Cache, pair: u64) -> u64 {
    EXECUTIONS_XFETCH.fetch_add(1, Relaxed);
    ran_in_this_call();
    tokio::time::sleep(STEADY_WORK).await;
    pair
}

#[redis_cache(ttl = 5, jitter = 0.0, early_refresh = false, skip(cache), cache = cache)]
async fn rate_without_early_refresh(cache: &Cache, pair: u64) -> u64 {
    EXECUTIONS_PLAIN.fetch_add(1, Relaxed);
    ran_in_this_call();
    tokio::time::sleep(STEADY_WORK).await;
    pair
}

/// An owned `Cache`: a background refresh owns its arguments.
#[redis_cache(ttl = 5, jitter = 0.0, refresh = "background", skip(cache), cache = cache)]
async fn rate_refreshed_in_background(cache: Cache, pair: u64) -> u64 {
    EXECUTIONS_BACKGROUND.fetch_add(1, Relaxed);
    ran_in_this_call();
    tokio::time::sleep(STEADY_WORK).await;
    pair
}

tokio::task_local! {
    /// Set by the function when it runs inside the call measured (not in a spawned refresh).
    static RAN_IN_CALL: std::cell::Cell<bool>;
}

fn ran_in_this_call() {
    let _ = RAN_IN_CALL.try_with(|ran| ran.set(true));
}

/// How a steady-load task's function refreshes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Refreshes {
    Early,
    InBackground,
    Never,
}

const USAGE: &str = "\
The stampede figures: a cold hot key under 1,000 callers (one process, then four), and 30 s of
steady load with early refresh inline, in the background, and off.

usage: cargo run --release --example stampede

Starts its own redis-server (on PATH) on a free loopback port, and runs copies of itself as
worker processes; reads no environment variable.
";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // This program runs itself as the worker processes of the multi-process case.
    if args.first().map(String::as_str) == Some("--worker") {
        return worker(WorkerConfig::from_args(&args[1..])).await;
    }
    Cli::parse("stampede", USAGE, &[]);
    let redis = RedisServer::start();
    let program: PathBuf = std::env::current_exe().expect("own path");
    let config = |prefix: &str, callers: usize| WorkerConfig {
        url: redis.url(),
        prefix: prefix.to_string(),
        callers,
        work_ms: WORK_MS,
        lease_ms: 3_000,
        hang: false,
    };

    println!("cold key, function {WORK_MS} ms:");
    println!(
        "  {:<28} {:>6} {:>10} {:>14} {:>12}",
        "case", "calls", "executions", "slow (>f+10ms)", "slowest ms"
    );
    let cases = [
        ("1 process x 1000 callers", vec![config("one", 1000)]),
        ("4 processes x 250 callers", vec![config("four", 250); 4]),
    ];
    for (name, configs) in cases {
        let reports = run_workers(&program, &["--worker"], &configs);
        let total = Report::total(&reports);
        println!(
            "  {:<28} {:>6} {:>10} {:>14} {:>12.1}",
            name,
            total.calls,
            total.executions,
            total.slow,
            total.max_micros as f64 / 1000.0
        );
        assert_eq!(total.values.len(), 1, "all callers got one value");
    }

    println!(
        "\nsteady load, {STEADY_TASKS} tasks for {} s, TTL 5 s, function {} ms:",
        STEADY.as_secs(),
        STEADY_WORK.as_millis()
    );
    let cache = redis.cache("steady");
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for task in 0..STEADY_TASKS {
        let cache = cache.clone();
        let stop = stop.clone();
        let refreshes = [Refreshes::Early, Refreshes::InBackground, Refreshes::Never][task % 3];
        tasks.push(tokio::spawn(async move {
            let (mut calls, mut ran, mut slow) = (0u64, 0u64, 0u64);
            while !stop.load(Relaxed) {
                let started = Instant::now();
                let call = async {
                    match refreshes {
                        Refreshes::Early => rate_with_early_refresh(&cache, 1).await,
                        Refreshes::InBackground => {
                            rate_refreshed_in_background(cache.clone(), 1).await
                        }
                        Refreshes::Never => rate_without_early_refresh(&cache, 1).await,
                    };
                    RAN_IN_CALL.with(std::cell::Cell::get)
                };
                calls += 1;
                ran += u64::from(RAN_IN_CALL.scope(Default::default(), call).await);
                slow += u64::from(started.elapsed() >= STEADY_WORK);
            }
            (refreshes, calls, ran, slow)
        }));
    }
    tokio::time::sleep(STEADY).await;
    stop.store(true, Relaxed);
    let (mut early, mut background, mut never) = ((0, 0, 0), (0, 0, 0), (0, 0, 0));
    for task in tasks {
        let (refreshes, calls, ran, slow) = task.await.unwrap();
        let slot = match refreshes {
            Refreshes::Early => &mut early,
            Refreshes::InBackground => &mut background,
            Refreshes::Never => &mut never,
        };
        slot.0 += calls;
        slot.1 += ran;
        slot.2 += slow;
    }
    cache.flush().await;
    println!(
        "  {:<26} {:>9} {:>7} {:>15} {:>9} {:>11} {:>16}",
        "case", "calls", "misses", "ran fn in call", ">= 50 ms", "executions", "early refreshes"
    );
    for (name, function, (calls, ran, slow), executions) in [
        (
            "early refresh, inline",
            "stampede::rate_with_early_refresh",
            early,
            &EXECUTIONS_XFETCH,
        ),
        (
            "early refresh, background",
            "stampede::rate_refreshed_in_background",
            background,
            &EXECUTIONS_BACKGROUND,
        ),
        (
            "early refresh off",
            "stampede::rate_without_early_refresh",
            never,
            &EXECUTIONS_PLAIN,
        ),
    ] {
        let stats = stats_for(function).expect("called");
        println!(
            "  {:<26} {:>9} {:>7} {:>15} {:>9} {:>11} {:>16}",
            name,
            calls,
            stats.misses,
            ran,
            slow,
            executions.load(Relaxed),
            stats.early_refreshes
        );
    }
}
