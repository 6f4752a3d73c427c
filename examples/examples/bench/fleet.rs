//! `--fleet`: what a fleet's misses cost the processes that keep local copies of other entries.
//!
//! The bench starts itself N times (N = 2, 8, 20) as fleet members on one loopback Redis. Each
//! member calls [`fleet_local`] (with `local`) over its own [`HOT_KEYS`] keys, [`CALLS_PER_SEC`]
//! calls a second, all served from its local tier. Meanwhile this process takes misses of
//! [`fleet_miss`] (without `local`) at [`MISSES_PER_SEC`]: each takes a lock, stores and releases
//! it. A member holds none of those entries, so ideally it hears of none of them.
//!
//! Three phases of `--secs` each: quiet (no misses); misses; changes (no misses, but this process
//! invalidates [`CHANGES_PER_SEC`] of each member's held keys a second, and the member computes
//! them again on its next call). Per member and per second, each reports the keys its tier was
//! told of (`Cache::local_announcements`) and the CPU time it used (the sum of its threads'
//! `/proc/self/task/*/schedstat`); the difference between the quiet and misses phases is what
//! the fleet's misses cost it. An observer connection of this process tracks the cache's whole
//! prefix (what every member's tier asked for before its channel tracked one prefix per held
//! function) and counts what it is told: what each member was told before.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis_cache_tests::RedisServer;
use redis_cached::{Cache, redis_cache};

/// The argument that makes the bench a fleet member; its index follows.
pub const MEMBER: &str = "--fleet-member";

const PREFIX: &str = "bench-fleet";
/// The fleet sizes measured.
const FLEETS: [usize; 3] = [2, 8, 20];
/// Keys each member keeps copies of (its own: member `i` reads `i * 1000..i * 1000 + 100`).
const HOT_KEYS: u64 = 100;
/// Calls per member per second, all local hits.
const CALLS_PER_SEC: u64 = 1_000;
/// Misses per second of the function no member keeps copies of, fleet-wide.
const MISSES_PER_SEC: u64 = 1_000;
/// Invalidations per second of each member's held keys, in the changes phase.
const CHANGES_PER_SEC: u64 = 10;
/// Calls and misses are issued in bursts this often.
const TICK: Duration = Duration::from_millis(10);

/// The function every member keeps copies of.
#[redis_cache(ttl = 3600, local = 1_000, skip(cache), cache = cache)]
async fn fleet_local(cache: &Cache, id: u64) -> u64 {
    id * 2
}

/// The function whose misses the fleet takes; nobody keeps copies of it.
#[redis_cache(ttl = 3600, skip(cache), cache = cache)]
async fn fleet_miss(cache: &Cache, id: u64) -> u64 {
    id * 3
}

/// CPU time this process's threads have used, in nanoseconds.
fn cpu_ns() -> u64 {
    crate::measure::cpu_time().as_nanos() as u64
}

/// A member's side: `REDIS_URL` from the environment; prints `ready` once its copies are held,
/// then answers each `start` / `stop` pair on stdin with `announcements cpu_ns elapsed_ns` for
/// the time between them. Exits when stdin closes.
pub fn member(index: u64) {
    crate::child_process(PREFIX, |cache| async move {
        let first = index * 1000;
        let name = "bench::fleet::fleet_local";
        let local_hits = || redis_cached::stats_for(name).map_or(0, |s| s.local_hits);
        for id in first..first + HOT_KEYS {
            // Until the call is served locally: computed or read, then copied.
            loop {
                let before = local_hits();
                assert_eq!(fleet_local(&cache, id).await, id * 2);
                if local_hits() > before {
                    break;
                }
            }
        }
        let mut events = cache.local_events().expect("a local tier");
        events
            .wait_for(|_| cache.local_coherent())
            .await
            .expect("the channel comes up");

        let calls = {
            let cache = cache.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(TICK);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let per_tick = CALLS_PER_SEC * TICK.as_millis() as u64 / 1000;
                let mut i = 0;
                loop {
                    tick.tick().await;
                    for _ in 0..per_tick {
                        let id = first + i % HOT_KEYS;
                        assert_eq!(fleet_local(&cache, id).await, id * 2);
                        i += 1;
                    }
                }
            })
        };

        let (tx, mut commands) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        println!("ready");
        let heard = || cache.local_announcements().unwrap_or(0);
        let mut since = (heard(), cpu_ns(), Instant::now());
        while let Some(command) = commands.recv().await {
            match command.trim() {
                "start" => since = (heard(), cpu_ns(), Instant::now()),
                "stop" => println!(
                    "{} {} {}",
                    heard() - since.0,
                    cpu_ns() - since.1,
                    since.2.elapsed().as_nanos()
                ),
                other => panic!("unknown fleet command {other:?}"),
            }
        }
        calls.abort();
    });
}

/// One phase's figures for one member.
struct Report {
    announcements: u64,
    cpu_ns: u64,
    elapsed_ns: u64,
}

impl Report {
    fn per_sec(&self, what: u64) -> f64 {
        what as f64 * 1e9 / self.elapsed_ns as f64
    }
}

struct Member {
    child: Child,
    stdin: ChildStdin,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Member {
    fn start(index: usize, url: &str) -> Member {
        let mut child = Command::new(std::env::current_exe().expect("this binary"))
            .args([MEMBER, &index.to_string()])
            .env("REDIS_URL", url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a fleet member");
        let stdin = child.stdin.take().expect("stdin");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Member {
            child,
            stdin,
            lines,
        }
    }

    fn line(&mut self) -> String {
        self.lines
            .next()
            .expect("the member answers")
            .expect("the member's output")
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").expect("the member's stdin");
        self.stdin.flush().expect("the member's stdin");
    }

    fn report(&mut self) -> Report {
        let line = self.line();
        let mut fields = line
            .split_whitespace()
            .map(|f| f.parse::<u64>().expect("a number"));
        let mut next = || fields.next().expect("announcements cpu_ns elapsed_ns");
        Report {
            announcements: next(),
            cpu_ns: next(),
            elapsed_ns: next(),
        }
    }
}

/// Counts the keys a whole-prefix subscription is told of.
async fn observer(redis: &RedisServer) -> (redis::aio::MultiplexedConnection, Arc<AtomicU64>) {
    let told = Arc::new(AtomicU64::new(0));
    let counter = told.clone();
    let config =
        redis::AsyncConnectionConfig::new().set_push_sender(move |push: redis::PushInfo| {
            if push.kind == redis::PushKind::Invalidate {
                let keys = match push.data.first() {
                    Some(redis::Value::Array(keys)) => keys.len() as u64,
                    _ => 1,
                };
                counter.fetch_add(keys, Ordering::Relaxed);
            }
            Ok::<(), redis::aio::SendError>(())
        });
    let client = redis::Client::open(format!("{}?protocol=resp3", redis.url())).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("the observer connects");
    let () = redis::cmd("CLIENT")
        .arg(&["TRACKING", "ON", "BCAST", "PREFIX"][..])
        .arg(format!("{PREFIX}:"))
        .query_async(&mut conn)
        .await
        .expect("tracking");
    (conn, told)
}

/// Invalidates [`CHANGES_PER_SEC`] held keys of each of `members` a second for `time`; how many
/// per member.
async fn changes(cache: &Cache, members: usize, time: Duration) -> u64 {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / CHANGES_PER_SEC as u32);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut done = 0;
    while started.elapsed() < time {
        tick.tick().await;
        for member in 0..members as u64 {
            let id = member * 1000 + done % HOT_KEYS;
            fleet_local_invalidate(cache, id)
                .await
                .expect("invalidated");
        }
        done += 1;
    }
    done
}

/// Misses of [`fleet_miss`] at [`MISSES_PER_SEC`] for `time`; how many were taken.
async fn misses(cache: &Cache, next: &mut u64, time: Duration) -> u64 {
    let per_tick = MISSES_PER_SEC * TICK.as_millis() as u64 / 1000;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut taken = 0;
    while started.elapsed() < time {
        tick.tick().await;
        let mut burst = tokio::task::JoinSet::new();
        for id in *next..*next + per_tick {
            let cache = cache.clone();
            burst.spawn(async move { assert_eq!(fleet_miss(&cache, id).await, id * 3) });
        }
        burst.join_all().await;
        *next += per_tick;
        taken += per_tick;
    }
    taken
}

pub async fn run(last_core: &str, time: Duration) {
    let redis = RedisServer::start_with(&["--server_cpulist", last_core]);
    let (_observer, whole_prefix) = observer(&redis).await;
    let cache = Cache::builder()
        .url(redis.url())
        .prefix(PREFIX)
        .build()
        .expect("cache");
    println!(
        "fleet: each member {CALLS_PER_SEC} local hits/s over {HOT_KEYS} keys of its own; this \
         process {MISSES_PER_SEC} misses/s of a function no member keeps copies of; {time:?} per \
         phase; then {CHANGES_PER_SEC} invalidations/s of each member's held keys. Per member: \
         keys its tier was told of per second, CPU ms per second (mean, and min-max over \
         members). `whole/s`: what a subscription to the cache's whole prefix is told of per \
         second (each member's tier before it tracked one prefix per held function)."
    );
    println!(
        "{:>3}  {:<7} {:>10} {:>12} {:>16} {:>18} {:>14} {:>9}",
        "N",
        "phase",
        "misses/s",
        "inv/s per proc",
        "told/s per proc",
        "CPU ms/s per proc",
        "min-max",
        "whole/s"
    );
    let mut next_miss = 1u64 << 40;
    for n in FLEETS {
        let mut members: Vec<Member> = (0..n).map(|i| Member::start(i, &redis.url())).collect();
        for member in &mut members {
            assert_eq!(member.line(), "ready");
        }
        let mut cpu = Vec::new();
        for phase in ["quiet", "misses", "changes"] {
            let observed = whole_prefix.load(Ordering::Relaxed);
            let started = Instant::now();
            for member in &mut members {
                member.send("start");
            }
            let (taken, changed) = match phase {
                "misses" => (misses(&cache, &mut next_miss, time).await, 0),
                "changes" => (0, changes(&cache, n, time).await),
                _ => {
                    tokio::time::sleep(time).await;
                    (0, 0)
                }
            };
            for member in &mut members {
                member.send("stop");
            }
            let reports: Vec<Report> = members.iter_mut().map(Member::report).collect();
            let elapsed = started.elapsed().as_secs_f64();
            let told = reports
                .iter()
                .map(|r| r.per_sec(r.announcements))
                .sum::<f64>()
                / n as f64;
            let cpu_ms: Vec<f64> = reports.iter().map(|r| r.per_sec(r.cpu_ns) / 1e6).collect();
            let mean = cpu_ms.iter().sum::<f64>() / n as f64;
            let (min, max) = cpu_ms
                .iter()
                .fold((f64::MAX, 0f64), |(lo, hi), &c| (lo.min(c), hi.max(c)));
            cpu.push(mean);
            println!(
                "{n:>3}  {phase:<7} {:>10.0} {:>12.1} {told:>16.1} {mean:>18.2} {:>14} {:>9.0}",
                taken as f64 / elapsed,
                changed as f64 / elapsed,
                format!("{min:.2}-{max:.2}"),
                (whole_prefix.load(Ordering::Relaxed) - observed) as f64 / elapsed,
            );
        }
        println!(
            "{n:>3}  the misses cost each member {:+.2} CPU ms/s",
            cpu[1] - cpu[0]
        );
        for mut member in members {
            drop(member.stdin);
            member.child.wait().expect("the member exits");
        }
    }
}
