//! A program with no `tracing` subscriber whose default cache (configured by the environment)
//! cannot reach Redis: it calls a cached function three times and exits. `tests/logging.rs`
//! reads what it prints on stderr.

use redis_cached::redis_cache;

#[redis_cache(ttl = 60)]
async fn double(x: u64) -> u64 {
    x * 2
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    for x in 0..3 {
        assert_eq!(double(x).await, x * 2);
    }
}
