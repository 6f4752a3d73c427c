//! `--soak`: 10 million calls over 100,000 keys from 64 tasks, with the process's resident memory
//! read every million calls. Entries live 2 s, so keys keep expiring and the whole flow runs:
//! hits, misses with their locks and stores, followers of the same key. At the end the in-flight
//! table must be empty and memory flat after the first million.
//!
//! `--soak-local` runs the same load through a function with `local = 10_000`: ten times more
//! keys than the tier holds, so copies are evicted all the time, and removed by the expiries'
//! announcements; the tier must stay within its bound and memory flat.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use redis_cache_tests::fixtures::Product;
use redis_cached::{Cache, redis_cache};

const CALLS: u64 = 10_000_000;
const KEYS: u64 = 100_000;
const TASKS: u64 = 64;
const REPORT_EVERY: u64 = 1_000_000;

#[redis_cache(ttl = 2, skip(cache), cache = cache)]
async fn soak_product(cache: &Cache, id: u64) -> Product {
    Product::sample(id)
}

/// [`soak_product`] with the local tier.
#[redis_cache(ttl = 2, local = 10_000, skip(cache), cache = cache)]
async fn soak_product_local(cache: &Cache, id: u64) -> Product {
    Product::sample(id)
}

/// Resident set size in KiB, from `/proc/self/status`.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

pub async fn run(cache: &Cache, local: bool) {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    println!(
        "{:>12} {:>10} {:>10} {:>10} {:>10}",
        "calls", "RSS KiB", "in flight", "local", "secs"
    );
    let name = if local {
        "bench::soak::soak_product_local"
    } else {
        "bench::soak::soak_product"
    };
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (cache, done) = (cache.clone(), done.clone());
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(task + 1);
                loop {
                    let n = done.fetch_add(1, Ordering::Relaxed);
                    if n >= CALLS {
                        break;
                    }
                    let id = rng.u64(0..KEYS);
                    let value = if local {
                        soak_product_local(&cache, id).await
                    } else {
                        soak_product(&cache, id).await
                    };
                    assert_eq!(value.id, id);
                    if (n + 1) % REPORT_EVERY == 0 {
                        let entries = redis_cached::stats_for(name).map_or(0, |s| s.local_entries);
                        println!(
                            "{:>12} {:>10} {:>10} {:>10} {:>10.1}",
                            n + 1,
                            rss_kib(),
                            cache.in_flight(),
                            entries,
                            started.elapsed().as_secs_f64()
                        );
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a soak task panicked");
    }
    let stats = redis_cached::stats_for(name).expect("called");
    println!(
        "done: {} calls in {:.1} s; {} local hits, {} hits, {} misses, {} coalesced; in flight at \
         the end: {}; local entries {} (evicted {}, invalidated {}); RSS {} KiB",
        stats.calls(),
        started.elapsed().as_secs_f64(),
        stats.local_hits,
        stats.hits,
        stats.misses,
        stats.coalesced,
        cache.in_flight(),
        stats.local_entries,
        stats.local_evictions,
        stats.local_invalidations,
        rss_kib()
    );
    assert!(
        stats.local_entries <= 10_000,
        "the tier stays within local = 10_000"
    );
    assert_eq!(
        cache.in_flight(),
        0,
        "the in-flight table returned to empty"
    );
}
