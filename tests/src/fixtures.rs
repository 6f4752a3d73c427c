//! Annotated functions shared by the test process and the helper binary, so both derive the same
//! keys (keys name the function by module path).

use std::sync::atomic::{AtomicU64, Ordering};

use cache_runtime::redis_cache;

/// Times [`shared_square`]'s body ran in this process.
pub static SHARED_SQUARE_RUNS: AtomicU64 = AtomicU64::new(0);

/// Used across processes: the helper binary fills it, the test reads it.
#[redis_cache(ttl = 60)]
pub async fn shared_square(x: u64) -> u64 {
    SHARED_SQUARE_RUNS.fetch_add(1, Ordering::SeqCst);
    x * x
}
