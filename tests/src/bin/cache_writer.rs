//! Helper for the cross-process test: calls `shared_square` with each argument, against the Redis
//! named by `REDIS_URL` and the prefix in `REDIS_CACHE_PREFIX` (the default cache, from the
//! environment), then prints how often the body ran.

use std::sync::atomic::Ordering;

use redis_cache_tests::fixtures::{SHARED_SQUARE_RUNS, shared_square};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    for arg in std::env::args().skip(1) {
        let x: u64 = arg.parse().expect("numeric argument");
        assert_eq!(shared_square(x).await, x * x);
    }
    // No flush before exiting: a miss returns after its store, so a short-lived program loses
    // nothing (the cross-process test reads these values back).
    println!("{}", SHARED_SQUARE_RUNS.load(Ordering::SeqCst));
}
