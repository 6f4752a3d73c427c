//! `--invalidation N`: how soon another process's `_invalidate` reaches this process's local
//! tier.
//!
//! The bench starts itself again as the other process (the invalidator), which invalidates one
//! key each time it is told to on its stdin and answers with the instant its `_invalidate`
//! returned. This process makes sure it holds a copy of the key, tells the invalidator to go,
//! and reads the instant the copy was removed (the tier's announcement event carries it). Meanwhile 16 tasks
//! keep calling: local hits on other keys and Redis hits on a function without `local`.
//!
//! Two figures per invalidation, both on the machine's wall clock (one clock, two processes):
//! - after `_invalidate` returned: when the copy went, counted from the invalidator's return
//!   (0 when the announcement arrived first: Redis sends it before the `DEL`'s reply);
//! - from the request: when the copy went, counted from the moment this process asked for the
//!   invalidation (the invalidator's wake-up and its round trip included).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis_cache_tests::RedisServer;
use redis_cached::{Cache, redis_cache};

use crate::{product, product_local, product_local_invalidate};
use redis_cache_tests::fixtures::Product;

/// The load's function: local hits that do not count as [`product_local`]'s, whose count tells
/// this process that it holds a copy of the key it is about to have invalidated.
#[redis_cache(ttl = 3600, local = 10_000, skip(cache), cache = cache)]
async fn load_local(cache: &Cache, id: u64) -> Product {
    Product::sample(id)
}

/// The argument that makes the bench the invalidator.
pub const INVALIDATOR: &str = "--invalidator";

const PREFIX: &str = "bench-invalidation";
/// Keys invalidated in turn.
const KEYS: u64 = 1000;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_micros() as u64
}

/// The invalidator's side: `REDIS_URL` from the environment, one key id per line on stdin, one
/// `id unix_us` line per invalidation on stdout.
pub fn invalidator() {
    crate::child_process(PREFIX, |cache| async move {
        let mut out = std::io::stdout().lock();
        for line in std::io::stdin().lock().lines() {
            let id: u64 = line.expect("stdin").trim().parse().expect("a key id");
            product_local_invalidate(&cache, id)
                .await
                .expect("invalidated");
            writeln!(out, "{id} {}", now_us()).expect("stdout");
            out.flush().expect("stdout");
        }
    });
}

pub async fn run(redis: &RedisServer, count: u64) {
    let cache = Cache::builder()
        .url(redis.url())
        .prefix(PREFIX)
        .command_timeout(Duration::from_secs(1))
        .build()
        .expect("cache");
    product_local(&cache, 0).await;
    let mut events = cache.local_events().expect("a local tier");
    events
        .wait_for(|_| cache.local_coherent())
        .await
        .expect("the invalidation channel comes up");

    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..16u64)
        .map(|task| {
            let (cache, stop) = (cache.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = task;
                while !stop.load(Ordering::Relaxed) {
                    let id = KEYS + i % 1000;
                    load_local(&cache, id).await;
                    product(&cache, id).await;
                    i += 16;
                }
            })
        })
        .collect();

    let mut child = Command::new(std::env::current_exe().expect("this binary"))
        .arg(INVALIDATOR)
        .env("REDIS_URL", redis.url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the invalidator");
    let mut to_child = child.stdin.take().expect("stdin");
    let (tx, mut returned) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let from_child = BufReader::new(child.stdout.take().expect("stdout"));
    std::thread::spawn(move || {
        for line in from_child.lines() {
            let line = line.expect("the invalidator's output");
            let at: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|t| t.parse().ok())
                .expect("id unix_us");
            if tx.send(at).is_err() {
                return;
            }
        }
    });

    let name = "bench::product_local";
    let local_hits = || redis_cached::stats_for(name).map_or(0, |s| s.local_hits);
    let (mut after_return, mut from_request) = (Vec::new(), Vec::new());
    for i in 0..count {
        let id = i % KEYS;
        // Hold a copy of the key: compute (after its invalidation), read back, then a local hit.
        loop {
            let before = local_hits();
            product_local(&cache, id).await;
            if local_hits() > before {
                break;
            }
        }
        events.mark_unchanged();
        let asked = now_us();
        writeln!(to_child, "{id}").expect("the invalidator's stdin");
        to_child.flush().expect("the invalidator's stdin");
        if tokio::time::timeout(Duration::from_secs(10), events.changed())
            .await
            .is_err()
        {
            panic!(
                "invalidation {i} (key {id}) was not announced within 10 s; coherent: {}; {:?}",
                cache.local_coherent(),
                redis_cached::stats_for(name)
            );
        }
        // The instant the tier removed the copy, not the (later) instant this task woke up.
        let removed = *events.borrow_and_update();
        let done = returned.recv().await.expect("the invalidator answers");
        after_return.push(removed.saturating_sub(done));
        from_request.push(removed.saturating_sub(asked));
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load task");
    }
    drop(to_child);
    child.wait().expect("the invalidator exits");

    let show = |what: &str, samples: &mut Vec<u64>| {
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
        println!(
            "{what:<48} p50 {:>7} µs   p99 {:>7} µs   max {:>7} µs",
            at(0.5),
            at(0.99),
            samples[samples.len() - 1]
        );
    };
    println!("{count} invalidations from another process, 16 tasks of load:");
    show(
        "copy removed, after _invalidate returned",
        &mut after_return,
    );
    show("copy removed, from the request", &mut from_request);
}
