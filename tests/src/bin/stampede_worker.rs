//! Helper for the multi-process stampede tests: one process calling the hot key with many
//! concurrent callers (see `redis_cache_tests::stampede`).

use redis_cache_tests::stampede::{WorkerConfig, worker};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    worker(WorkerConfig::from_args(&args)).await;
}
