//! Annotated functions shared by the test process and the helper binary, so both derive the same
//! keys (keys name the function by module path).

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis_cached::{Cache, redis_cache};

/// Times [`shared_square`]'s body ran in this process.
pub static SHARED_SQUARE_RUNS: AtomicU64 = AtomicU64::new(0);

/// Used across processes: the helper binary fills it, the test reads it.
#[redis_cache(ttl = 60)]
pub async fn shared_square(x: u64) -> u64 {
    SHARED_SQUARE_RUNS.fetch_add(1, Ordering::SeqCst);
    x * x
}

/// Times [`cold`]'s body ran in this process.
pub static COLD_RUNS: AtomicU64 = AtomicU64::new(0);
/// How long [`cold`]'s body works, in milliseconds.
pub static COLD_WORK_MS: AtomicU64 = AtomicU64::new(0);
/// When set, [`cold`]'s body prints `computing` and never finishes: a lock holder to kill.
pub static COLD_HANG: AtomicBool = AtomicBool::new(false);

/// The hot key of the stampede tests, computed by several processes at once. Its value names the
/// process and run that computed it, so callers can tell whether they all got the same one.
#[redis_cache(ttl = 60, skip(cache), cache = cache, name = "fixtures::cold")]
pub async fn cold(cache: &Cache, id: u64) -> String {
    let run = COLD_RUNS.fetch_add(1, Ordering::SeqCst) + 1;
    if COLD_HANG.load(Ordering::SeqCst) {
        println!("computing");
        std::io::stdout().flush().expect("stdout");
        std::future::pending::<()>().await;
    }
    let work = Duration::from_millis(COLD_WORK_MS.load(Ordering::SeqCst));
    tokio::time::sleep(work).await;
    format!("id {id} computed by pid {} run {run}", std::process::id())
}

/// Which computation a [`local_value`] caller got: the local tier's tests change it between
/// calls, and each process has its own.
pub static LOCAL_GENERATION: AtomicU64 = AtomicU64::new(0);

/// The local tier's function, shared with the `local_peer` helper binary: its value names the
/// generation and the process that computed it.
#[redis_cache(ttl = 300, local = 1000, skip(cache), cache = cache, name = "fixtures::local_value")]
pub async fn local_value(cache: &Cache, id: u64) -> String {
    let generation = LOCAL_GENERATION.load(Ordering::SeqCst);
    format!("id {id} generation {generation} pid {}", std::process::id())
}

/// The keys [`batch_item`]'s body computed in this process, in order.
pub static BATCH_COMPUTED: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());

/// The batch function of the cross-process tests, shared with the `batch_worker` helper
/// binary. Its body takes a while, so concurrent calls overlap.
#[redis_cache(ttl = 300, batch = ids, skip(cache), cache = cache, name = "fixtures::batch_item")]
pub async fn batch_item(cache: &Cache, ids: Vec<u64>) -> std::collections::HashMap<u64, String> {
    BATCH_COMPUTED.lock().unwrap().extend(&ids);
    tokio::time::sleep(Duration::from_millis(50)).await;
    ids.iter().map(|id| (*id, batch_item_value(*id))).collect()
}

/// What [`batch_item`] answers for `id`.
pub fn batch_item_value(id: u64) -> String {
    format!("item {id}")
}

/// The overlapping calls each process of the cross-process batch test makes at once: windows
/// of 40 keys every 20 over 0..120, the process with `reversed` asking for them last first.
pub fn batch_item_calls(reversed: bool) -> Vec<Vec<u64>> {
    let mut calls: Vec<Vec<u64>> = (0..5u64).map(|c| (c * 20..c * 20 + 40).collect()).collect();
    if reversed {
        calls.reverse();
        for call in &mut calls {
            call.reverse();
        }
    }
    calls
}

/// The value the examples measure with: a product record of about 200 bytes once encoded.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Product {
    pub id: u64,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price_cents: u64,
    pub stock: u32,
    pub tags: Vec<String>,
}

impl Product {
    pub fn sample(id: u64) -> Product {
        Product {
            id,
            sku: format!("SKU-{id:08}"),
            name: format!("Stainless steel water bottle, {} ml", 500 + (id % 4) * 250),
            description:
                "Double-walled, keeps drinks cold for 24 hours and hot for 12. Dishwasher safe."
                    .into(),
            price_cents: 1999 + (id % 10) * 100,
            stock: 120,
            tags: vec!["outdoor".into(), "kitchen".into(), "gift".into()],
        }
    }
}
