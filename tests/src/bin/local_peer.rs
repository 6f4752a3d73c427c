//! Helper for the local tier's tests: another process that changes `fixtures::local_value`'s
//! entries the way a service's other replicas would, against the Redis in `REDIS_URL` with the
//! prefix in `REDIS_CACHE_PREFIX`.
//!
//! `local_peer invalidate ID`, `local_peer refresh ID GENERATION`, `local_peer clear`.

use std::sync::atomic::Ordering;

use redis_cache_tests::fixtures::{LOCAL_GENERATION, local_value_invalidate, local_value_refresh};
use redis_cached::Cache;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cache = Cache::from_env().expect("REDIS_URL and REDIS_CACHE_PREFIX");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize| -> u64 { args[i].parse().expect("a number") };
    match args.first().map(String::as_str) {
        Some("invalidate") => {
            local_value_invalidate(&cache, number(1))
                .await
                .expect("invalidated");
        }
        Some("refresh") => {
            LOCAL_GENERATION.store(number(2), Ordering::SeqCst);
            local_value_refresh(&cache, number(1)).await;
        }
        Some("clear") => {
            cache
                .clear_function("fixtures::local_value")
                .await
                .expect("cleared");
        }
        other => panic!("unknown command {other:?}"),
    }
}
