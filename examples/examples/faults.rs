//! The fault-injection figures: for each fault, done to a real `redis-server` while 64 tasks call a
//! cached function, the calls made, the calls that did not return the function's value, the
//! slowest call, and how long after the repair the cache stored again. Then the cost of a call
//! while the circuit breaker is open, against calling the same function without the attribute.
//!
//! `cargo run --release --example faults` (needs `redis-server` on PATH; every server is its own,
//! on a free loopback port). The scenarios are the ones `tests/faults.rs` asserts on.

use std::hint::black_box;
use std::time::{Duration, Instant};

use redis_cache_examples::cli::Cli;
use redis_cache_tests::RedisServer;
use redis_cache_tests::faults::{self, COMMAND_TIMEOUT, FaultReport, HOLD, TASKS};
use redis_cached::{BreakerState, Cache, redis_cache};

const USAGE: &str = "\
The fault-injection figures: each fault done to a real redis-server under 64 tasks of load.

usage: cargo run --release --example faults

Starts its own redis-server processes (on PATH) on free loopback ports; reads no environment
variable.
";

#[tokio::main]
async fn main() {
    Cli::parse("faults", USAGE, &[]);
    println!(
        "{TASKS} tasks, fault held {} s, command timeout {} ms, breaker: 5 failures, probes from 10 ms doubling to 100 ms\n",
        HOLD.as_secs(),
        COMMAND_TIMEOUT.as_millis()
    );
    println!("| fault | calls | errors | slowest call | cache used again after | breaker opened |");
    println!("|---|---|---|---|---|---|");
    let reports = [
        faults::redis_never_started().await,
        faults::redis_killed_and_restarted().await,
        faults::redis_paused_with_sigstop().await,
        faults::redis_client_pause().await,
        faults::redis_debug_sleep().await,
        faults::redis_out_of_memory().await,
        faults::redis_evicting().await,
        faults::redis_holds_garbage().await,
        faults::redis_requires_a_password().await,
        faults::redis_read_only_replica().await,
    ];
    for report in &reports {
        row(report);
    }
    breaker_overhead().await;
}

fn row(r: &FaultReport) {
    let recovered = r
        .recovered_after
        .map_or("never".to_string(), |d| format!("{:.0} ms", ms(d)));
    println!(
        "| {} | {} | {} | {:.1} ms | {} | {} |",
        r.fault,
        r.calls,
        r.wrong,
        ms(r.slowest),
        recovered,
        r.breaker_opened
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn work(id: u64) -> u64 {
    black_box(id).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7
}

#[redis_cache(ttl = 60, skip(cache), cache = cache)]
async fn cached_work(cache: &Cache, id: u64) -> u64 {
    work(id)
}

async fn plain_work(id: u64) -> u64 {
    work(id)
}

/// Calls per round; rounds alternate between the two paths and the median round counts.
const CALLS: u64 = 200_000;
const ROUNDS: usize = 11;

async fn breaker_overhead() {
    // A frozen Redis and a breaker that opens on the first failure and probes once an hour:
    // this measures the open breaker itself, not its probes (each costs one caller a deadline).
    let redis = RedisServer::start();
    redis.pause();
    let cache = Cache::builder()
        .url(redis.url())
        .prefix("open")
        .command_timeout(COMMAND_TIMEOUT)
        .circuit_breaker(1, Duration::from_secs(3600), Duration::from_secs(3600))
        .build()
        .unwrap();
    cached_work(&cache, 0).await;
    assert_eq!(cache.breaker().state, BreakerState::Open);

    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for id in 0..CALLS {
            black_box(plain_work(id).await);
        }
        without.push(started.elapsed() / CALLS as u32);
        let started = Instant::now();
        for id in 0..CALLS {
            black_box(cached_work(&cache, id).await);
        }
        with.push(started.elapsed() / CALLS as u32);
    }
    redis.resume();
    with.sort();
    without.sort();
    let (with, without) = (with[ROUNDS / 2], without[ROUNDS / 2]);
    println!(
        "\nbreaker open: {:.0} ns per call with #[redis_cache], {:.0} ns without; overhead {:.0} ns \
         (median of {ROUNDS} rounds x {CALLS} calls)",
        with.as_nanos(),
        without.as_nanos(),
        with.as_nanos() as f64 - without.as_nanos() as f64
    );
}
