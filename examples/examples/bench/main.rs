//! The benchmark suite: what `#[redis_cache]` costs next to the round trip it cannot avoid.
//!
//! ```text
//! cargo run --release -p redis-cache-examples --example bench
//! cargo run --release -p redis-cache-examples --example bench --features peers   # + cached, cachekit-rs
//! cargo run --release -p redis-cache-examples --example bench -- --soak          # memory over 10M calls
//! cargo run --release -p redis-cache-examples --example bench -- --soak-local    # the same with `local`
//! cargo run --release -p redis-cache-examples --example bench -- --invalidation 10000
//! cargo run --release -p redis-cache-examples --example bench -- --tags
//! cargo run --release -p redis-cache-examples --example bench -- --batch
//! cargo run --release -p redis-cache-examples --example bench -- --blocking
//! cargo run --release -p redis-cache-examples --example bench -- --fleet
//! cargo run --release -p redis-cache-examples --example bench -- --cluster
//! ```
//!
//! It starts its own `redis-server` on a free loopback port and measures, with the same ~200-byte
//! serde struct as the value, at 1 and 64 concurrent tasks on a multi-threaded Tokio runtime:
//!
//! - `raw GET`: redis-rs `GET` of a pre-stored value plus its bincode decode, on a multiplexed
//!   connection: the floor every other case is compared with;
//! - `hit`: an annotated function whose keys are all present; `tagged hit`: the same with
//!   `tags("product:{id}", "catalog")`;
//! - `miss`: an annotated function called with fresh arguments every time (with and without the
//!   cross-process lock, the store awaited or in the background), next to `fn + GET + SET` done
//!   by hand;
//! - `hot key`: every task reading the same key, next to raw `GET`s of one key;
//! - `breaker open`: a cache whose Redis is unreachable, next to calling the function directly;
//! - `local hit`: an annotated function with `local = 10_000` whose keys are all copied in the
//!   process (the local tier), next to the map it replaces written by hand (`RwLock<HashMap>`
//!   of values with their expiry, a read lock, a TTL check and a clone per hit) and to the
//!   tier's container alone (quick_cache's `get` of the same values, a TTL check);
//! - with `--features peers`: the `cached` crate's Redis store, `cachekit-rs` (L1 off, and L1
//!   on), and `moka::future::Cache::get_with` of the decoded value;
//! - with `--invalidation N`: how long after another process's `_invalidate` returns this process
//!   stops serving its local copy, over N invalidations under load (p50, p99);
//! - with `--tags`: `invalidate_tag` of tags with 1, 100 and 10,000 entries in a database of
//!   1,000,000 keys, and the memory of tag structures before and after 100,000 tagged entries
//!   expire;
//! - with `--batch`: a batch function of 100 ids against `MGET` + decode and against 100 single
//!   hits, on one server and a cluster, and its round trips with 10 misses (see `batch.rs`);
//! - with `--blocking`: a blocking function's hit and local hit from plain threads, against a
//!   hand-written blocking `GET` + decode (see `blocking.rs`);
//! - with `--cluster`: the hit on a 3-primary cluster against redis-rs's cluster client's `GET` +
//!   decode (see `cluster.rs`);
//! - with `--fleet`: 2, 8 and 20 processes keeping local copies while another function takes
//!   misses: what each process is told of and the CPU it spends (see `fleet.rs`).
//!
//! Raw and hit alternate in rounds so that drift (CPU frequency, the other process on the two
//! cores) falls on both alike. Options: `--secs S` per case (default 3), `--warmup S` (default 1),
//! `--keys N` (default 1000), `--quick` (a smoke run: 0.2 s per case).

mod batch;
mod blocking;
mod cluster;
mod codecs;
mod fleet;
mod invalidation;
mod measure;
#[cfg(feature = "peers")]
mod peers;
mod soak;
mod tags;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis_cache_tests::RedisServer;
use redis_cache_tests::fixtures::Product;
use redis_cached::{Cache, redis_cache};

use measure::{Flush, Sample, Untimed};
use redis_cache_examples::cli::Cli;

/// A hit for every key the benchmark reads (they are stored before it starts).
#[redis_cache(ttl = 3600, skip(cache), cache = cache)]
async fn product(cache: &Cache, id: u64) -> Product {
    Product::sample(id)
}

/// [`product`] with two tags: the hit path is the same (tags cost only on a store).
#[redis_cache(ttl = 3600, tags("product:{id}", "catalog"), skip(cache), cache = cache)]
async fn product_tagged(cache: &Cache, id: u64) -> Product {
    Product::sample(id)
}

/// [`product`] with the local tier: its keys are copied in the process.
#[redis_cache(ttl = 3600, local = 10_000, skip(cache), cache = cache)]
async fn product_local(cache: &Cache, id: u64) -> Product {
    Product::sample(id)
}

/// The in-process map the local tier replaces, written by hand: a TTL per entry, a read lock and
/// a clone per hit.
type HandMap =
    Arc<std::sync::RwLock<std::collections::HashMap<u64, (std::time::Instant, Product)>>>;

fn hand_map(keys: u64) -> HandMap {
    let until = std::time::Instant::now() + Duration::from_secs(3600);
    Arc::new(std::sync::RwLock::new(
        (0..keys)
            .map(|id| (id, (until, Product::sample(id))))
            .collect(),
    ))
}

fn hand_map_get(map: &HandMap, id: u64) -> Option<Product> {
    let map = map.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (until, product) = map.get(&id)?;
    (std::time::Instant::now() < *until).then(|| product.clone())
}

/// The container the local tier keeps its copies in, alone: quick_cache's bounded map of the
/// same values with a TTL per entry, configured as the tier's (one shard, one unit per entry),
/// one `get` (a clone) per hit. The floor under the local hit, which adds the key's hash, the
/// coherence checks and the counters.
type Container = Arc<quick_cache::sync::Cache<u64, (std::time::Instant, Product)>>;

fn container(keys: u64) -> Container {
    let until = std::time::Instant::now() + Duration::from_secs(3600);
    let options = quick_cache::OptionsBuilder::new()
        .estimated_items_capacity(usize::try_from(keys).expect("a key count"))
        .weight_capacity(keys)
        .shards(1)
        .build()
        .expect("valid options");
    let cache = quick_cache::sync::Cache::with_options(
        options,
        quick_cache::UnitWeighter,
        Default::default(),
        Default::default(),
    );
    for id in 0..keys {
        cache.insert(id, (until, Product::sample(id)));
    }
    Arc::new(cache)
}

fn container_get(cache: &Container, id: u64) -> Option<Product> {
    let (until, product) = cache.get(&id)?;
    (std::time::Instant::now() < until).then_some(product)
}

/// Always called with a fresh id: every call is a miss.
#[redis_cache(ttl = 3600, skip(cache), cache = cache)]
async fn product_miss(cache: &Cache, id: u64) -> Product {
    Product::sample(id)
}

/// [`product_miss`] without the cross-process lock.
#[redis_cache(ttl = 3600, skip(cache), cache = cache, lock = false)]
async fn product_miss_unlocked(cache: &Cache, id: u64) -> Product {
    Product::sample(id)
}

/// The function the cache wraps, called directly.
async fn direct(id: u64) -> Product {
    Product::sample(id)
}

/// Fresh ids for the miss cases, never read before.
static FRESH: AtomicU64 = AtomicU64::new(1 << 40);

fn fresh_id() -> u64 {
    FRESH.fetch_add(1, Ordering::Relaxed)
}

const USAGE: &str = "\
The benchmark suite: what #[redis_cache] costs next to the round trip it cannot avoid.

usage: cargo run --release -p redis-cache-examples --example bench [--features peers] [-- OPTIONS]

options:
  --secs S            seconds per case (default 3)
  --warmup S          seconds of warm-up per case (default 1)
  --keys N            keys read (default 1000)
  --tasks N           only this concurrency (default: 1 and 64)
  --only A/B/...      only these cases, by name
  --quick             a smoke run: 0.2 s per case, one round
  --soak              memory over 10M calls
  --soak-local        the same through a function with `local`
  --invalidation N    local-tier invalidation latency over N invalidations
  --tags              invalidate_tag in a 1M-key database, and tag memory before and after expiry
  --batch             a batch of 100 ids: against MGET + decode, 100 single hits, a cluster
  --codecs            each codec: encode and decode time, entry size, hits per second
  --blocking          a blocking function from plain threads, against a blocking GET + decode
  --cluster           the hit on a 3-primary cluster, against redis-rs's cluster GET + decode
  --fleet             2, 8, 20 processes with a local tier while another function takes misses:
                      keys each is told of per second, and its CPU (--secs per phase, default 3)
  -h, --help          print this

Starts its own redis-server (on PATH) on a free loopback port; reads no environment variable.
";

struct Options {
    time: Duration,
    warmup: Duration,
    keys: u64,
    rounds: usize,
    soak: bool,
    /// `--soak-local`: the soak through a function with `local`.
    soak_local: bool,
    /// `--invalidation N`: measure invalidation latency over N invalidations instead.
    invalidation: Option<u64>,
    /// `--batch`: the batch figures instead.
    batch: bool,
    /// `--tags`: the tag figures instead.
    tags: bool,
    /// `--codecs`: each codec's figures instead.
    codecs: bool,
    /// `--blocking`: the blocking function's figures instead.
    blocking: bool,
    /// `--fleet`: the fleet's invalidation traffic instead.
    fleet: bool,
    /// `--cluster`: the hit on a cluster instead.
    cluster: bool,
    /// Concurrencies to measure.
    tasks: Vec<usize>,
    /// Only these cases (names separated by `/`), for profiling.
    only: Option<String>,
}

impl Options {
    fn parse() -> Options {
        let mut options = Options {
            time: Duration::from_secs(3),
            warmup: Duration::from_secs(1),
            keys: 1000,
            rounds: 3,
            soak: false,
            soak_local: false,
            invalidation: None,
            tags: false,
            batch: false,
            codecs: false,
            blocking: false,
            fleet: false,
            cluster: false,
            only: None,
            tasks: vec![1, 64],
        };
        let cli = Cli::parse(
            "bench",
            USAGE,
            &[
                ("--secs", true),
                ("--warmup", true),
                ("--keys", true),
                ("--quick", false),
                ("--soak", false),
                ("--soak-local", false),
                ("--invalidation", true),
                ("--tags", false),
                ("--batch", false),
                ("--codecs", false),
                ("--blocking", false),
                ("--fleet", false),
                ("--cluster", false),
                ("--tasks", true),
                ("--only", true),
            ],
        );
        if cli.flag("--quick") {
            options.time = Duration::from_millis(200);
            options.warmup = Duration::from_millis(50);
            options.rounds = 1;
        }
        if let Some(secs) = cli.value("--secs") {
            options.time = Duration::from_secs_f64(secs);
        }
        if let Some(secs) = cli.value("--warmup") {
            options.warmup = Duration::from_secs_f64(secs);
        }
        options.keys = cli.value("--keys").unwrap_or(options.keys);
        options.soak = cli.flag("--soak");
        options.soak_local = cli.flag("--soak-local");
        options.invalidation = cli.value("--invalidation");
        options.tags = cli.flag("--tags");
        options.batch = cli.flag("--batch");
        options.codecs = cli.flag("--codecs");
        options.blocking = cli.flag("--blocking");
        options.fleet = cli.flag("--fleet");
        options.cluster = cli.flag("--cluster");
        if let Some(tasks) = cli.value("--tasks") {
            options.tasks = vec![tasks];
        }
        options.only = cli.value("--only");
        options
    }
}

/// A case at one concurrency.
struct Row {
    case: String,
    tasks: usize,
    sample: Sample,
}

/// Everything a case needs, cheap to clone into tasks.
#[derive(Clone)]
struct Bench {
    cache: Cache,
    /// The same server, with `background_stores(true)`.
    background: Cache,
    down: Cache,
    raw: MultiplexedConnection,
    keys: u64,
    /// The Redis key of `product(id)`'s entry, by id: the raw `GET` of the same entry reads it.
    entries: Arc<Vec<String>>,
}

impl Bench {
    async fn raw_get(mut self, id: u64) {
        let bytes: Vec<u8> = redis::cmd("GET")
            .arg(raw_key(id))
            .query_async(&mut self.raw)
            .await
            .expect("raw GET");
        let (value, _): (Product, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
                .expect("raw decode");
        assert_eq!(value.id, id);
    }

    /// The raw `GET` of the entry the hit reads (same key, same bytes) and its opening: the hit
    /// without the cache's own work, so that the key's and the envelope's price is not counted
    /// against it.
    async fn raw_get_entry(mut self, id: u64) {
        let bytes: Vec<u8> = redis::cmd("GET")
            .arg(&self.entries[id as usize])
            .query_async(&mut self.raw)
            .await
            .expect("raw GET");
        let value: Product = redis_cached::__private::bench::open(&bytes).expect("an entry");
        assert_eq!(value.id, id);
    }

    /// What a hand-written cache-aside miss costs: `GET` (absent), the function, `SET`.
    async fn raw_miss(mut self, id: u64) {
        let key = raw_key(id);
        let found: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut self.raw)
            .await
            .expect("raw GET");
        assert!(found.is_none());
        let value = direct(id).await;
        let bytes = bincode::serde::encode_to_vec(&value, bincode::config::standard()).unwrap();
        let () = redis::cmd("SET")
            .arg(&key)
            .arg(bytes)
            .arg("EX")
            .arg(3600)
            .query_async(&mut self.raw)
            .await
            .expect("raw SET");
    }
}

/// The body of a process the bench starts from itself (another process of a fleet): a
/// current-thread runtime and a cache with `prefix` on the server in `REDIS_URL`.
fn child_process<F: std::future::Future<Output = ()>>(prefix: &str, body: impl FnOnce(Cache) -> F) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let url = std::env::var("REDIS_URL").expect("REDIS_URL");
    let cache = Cache::builder()
        .url(url)
        .prefix(prefix)
        .build()
        .expect("cache");
    runtime.block_on(body(cache));
}

/// A cache whose deadlines are far above a healthy reply: a stall of this shared machine must not
/// trip a breaker and turn a measurement into one of fallbacks.
fn patient(builder: redis_cached::CacheBuilder) -> Cache {
    builder
        .prefix("bench")
        .command_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("cache")
}

/// The key of each entry matching `pattern`, by the id of the [`Product`] it holds.
async fn entries_by_id(
    conn: &mut MultiplexedConnection,
    pattern: &str,
) -> std::collections::HashMap<u64, String> {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(conn)
        .await
        .expect("KEYS");
    let mut entries = std::collections::HashMap::new();
    for key in keys {
        let bytes: Vec<u8> = redis::cmd("GET")
            .arg(&key)
            .query_async(conn)
            .await
            .expect("GET");
        let product: Product = redis_cached::__private::bench::open(&bytes).expect("an entry");
        entries.insert(product.id, key);
    }
    entries
}

fn raw_key(id: u64) -> String {
    format!("raw:product:{id}")
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some(invalidation::INVALIDATOR) {
        return invalidation::invalidator();
    }
    if std::env::args().nth(1).as_deref() == Some(fleet::MEMBER) {
        let index = std::env::args().nth(2).and_then(|i| i.parse().ok());
        return fleet::member(index.expect("a member index"));
    }
    let options = Options::parse();
    if options.blocking {
        // Plain threads: no runtime of the program's own.
        let last_core = (cores() - 1).to_string();
        return blocking::run(&last_core, options.time, options.rounds.max(3));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_threads())
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    runtime.block_on(async_main(options));
}

/// The cores the client may use: all but the one Redis is pinned to (so the two do not trade
/// places between runs), and at least one.
fn client_threads() -> usize {
    cores().saturating_sub(1).max(1)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

async fn async_main(options: Options) {
    // Redis's main thread on the last core.
    let last_core = (cores() - 1).to_string();
    if options.tags {
        return tags::run(&last_core).await;
    }
    if options.batch {
        return batch::run(&last_core, options.time, options.rounds.max(3)).await;
    }
    if options.codecs {
        return codecs::run(&last_core, options.time, options.rounds.max(3)).await;
    }
    if options.fleet {
        return fleet::run(&last_core, options.time).await;
    }
    if options.cluster {
        let o = &options;
        return cluster::run(&last_core, o.time, o.warmup, o.keys, o.rounds.max(3)).await;
    }
    let redis = RedisServer::start_with(&["--server_cpulist", &last_core]);
    let cache = Cache::builder()
        .url(redis.url())
        .prefix("bench")
        .build()
        .expect("cache");
    if options.soak || options.soak_local {
        return soak::run(&cache, options.soak_local).await;
    }
    if let Some(count) = options.invalidation {
        return invalidation::run(&redis, count).await;
    }
    let bench = Bench {
        cache: cache.clone(),
        background: Cache::builder()
            .url(redis.url())
            .prefix("bench-bg")
            .background_stores(true)
            .build()
            .expect("cache"),
        down: redis_cache_tests::unreachable_cache("bench-down"),
        raw: redis.connection().await,
        keys: options.keys,
        entries: Arc::default(),
    };
    let mut bench = bench;
    bench.entries = Arc::new(prepare(&bench).await);
    let hand_map = hand_map(bench.keys);
    let container = container(bench.keys);
    #[cfg(feature = "peers")]
    let peers = peers::setup(&redis.url()).await;
    #[cfg(feature = "peers")]
    for id in 0..bench.keys {
        assert_eq!(peers.cached_crate(id).await, Product::sample(id));
        assert_eq!(peers.cachekit(id).await, Product::sample(id));
        assert_eq!(peers.cachekit_l1(id).await, Product::sample(id));
        assert_eq!(peers.moka(id).await, Product::sample(id));
    }

    println!(
        "redis-server on loopback (pinned to the last core), {} keys, value {} bytes (bincode), {} \
         Tokio worker threads, {} cores; {:?} per case after {:?} of warm-up",
        bench.keys,
        bincode::serde::encode_to_vec(Product::sample(1), bincode::config::standard())
            .unwrap()
            .len(),
        tokio::runtime::Handle::current().metrics().num_workers(),
        cores(),
        options.time,
        options.warmup,
    );

    let mut suite = Suite {
        options,
        rows: Vec::new(),
    };
    for tasks in suite.options.tasks.clone() {
        // Raw and hit alternate.
        for _ in 0..suite.options.rounds {
            let b = bench.clone();
            suite
                .case(RAW, tasks, move |rng| b.clone().raw_get(rng.u64(0..b.keys)))
                .await;
            let b = bench.clone();
            suite
                .case(RAW_ENTRY, tasks, move |rng| {
                    b.clone().raw_get_entry(rng.u64(0..b.keys))
                })
                .await;
            let b = bench.clone();
            suite
                .case(HIT, tasks, move |rng| {
                    let (cache, id) = (b.cache.clone(), rng.u64(0..b.keys));
                    async move { assert_eq!(product(&cache, id).await.id, id) }
                })
                .await;
            let b = bench.clone();
            suite
                .case(TAGGED_HIT, tasks, move |rng| {
                    let (cache, id) = (b.cache.clone(), rng.u64(0..b.keys));
                    async move { assert_eq!(product_tagged(&cache, id).await.id, id) }
                })
                .await;
        }
        let b = bench.clone();
        suite
            .case(LOCAL_HIT, tasks, move |rng| {
                let (cache, id) = (b.cache.clone(), rng.u64(0..b.keys));
                async move { assert_eq!(product_local(&cache, id).await.id, id) }
            })
            .await;
        let (map, keys) = (hand_map.clone(), bench.keys);
        suite
            .case(HAND_MAP, tasks, move |rng| {
                let (map, id) = (map.clone(), rng.u64(0..keys));
                async move { assert_eq!(hand_map_get(&map, id).map(|p| p.id), Some(id)) }
            })
            .await;
        let (cache, keys) = (container.clone(), bench.keys);
        suite
            .case(CONTAINER, tasks, move |rng| {
                let (cache, id) = (cache.clone(), rng.u64(0..keys));
                async move { assert_eq!(container_get(&cache, id).map(|p| p.id), Some(id)) }
            })
            .await;
        #[cfg(feature = "peers")]
        {
            let (p, keys) = (peers.clone(), bench.keys);
            suite
                .case(PEER_MOKA, tasks, move |rng| {
                    let (p, id) = (p.clone(), rng.u64(0..keys));
                    async move { assert_eq!(p.moka(id).await.id, id) }
                })
                .await;
            let p = peers.clone();
            suite
                .case(PEER_CACHEKIT_L1, tasks, move |rng| {
                    let (p, id) = (p.clone(), rng.u64(0..keys));
                    async move { assert_eq!(p.cachekit_l1(id).await.id, id) }
                })
                .await;
            let p = peers.clone();
            suite
                .case(PEER_CACHED, tasks, move |rng| {
                    let (p, id) = (p.clone(), rng.u64(0..keys));
                    async move { assert_eq!(p.cached_crate(id).await.id, id) }
                })
                .await;
            let p = peers.clone();
            suite
                .case(PEER_CACHEKIT, tasks, move |rng| {
                    let (p, id) = (p.clone(), rng.u64(0..keys));
                    async move { assert_eq!(p.cachekit(id).await.id, id) }
                })
                .await;
        }

        let b = bench.clone();
        suite
            .case(RAW_ONE_KEY, tasks, move |_| b.clone().raw_get(0))
            .await;
        let b = bench.clone();
        suite
            .case(HOT_KEY, tasks, move |_| {
                let cache = b.cache.clone();
                async move { assert_eq!(product(&cache, 0).await.id, 0) }
            })
            .await;

        let b = bench.clone();
        suite
            .case(RAW_MISS, tasks, move |_| b.clone().raw_miss(fresh_id()))
            .await;
        // Misses with and without the lock, the store awaited or in the background.
        for (case, cache, locked) in [
            (MISS, &bench.cache, true),
            (MISS_UNLOCKED, &bench.cache, false),
            (MISS_BACKGROUND, &bench.background, true),
            (MISS_UNLOCKED_BACKGROUND, &bench.background, false),
        ] {
            let cache = cache.clone();
            suite
                .case(case, tasks, move |_| {
                    let (cache, id) = (cache.clone(), fresh_id());
                    async move {
                        let value = if locked {
                            product_miss(&cache, id).await
                        } else {
                            product_miss_unlocked(&cache, id).await
                        };
                        assert_eq!(value.id, id);
                        Flush(cache)
                    }
                })
                .await;
        }

        suite
            .case(DIRECT, tasks, move |rng| {
                let id = rng.u64(0..1000);
                async move { assert_eq!(direct(id).await.id, id) }
            })
            .await;
        let b = bench.clone();
        suite
            .case(BREAKER_OPEN, tasks, move |rng| {
                let (cache, id) = (b.down.clone(), rng.u64(0..1000));
                async move { assert_eq!(product(&cache, id).await.id, id) }
            })
            .await;
    }
    suite.report();
    assert_eq!(bench.down.breaker().state, redis_cached::BreakerState::Open);
    let local = redis_cached::stats_for("bench::product_local").expect("product_local was called");
    // (Unless `--only` left the local hit case out.)
    assert!(
        local.local_hits > local.hits || suite.rows.iter().all(|row| row.case != LOCAL_HIT),
        "the local hit case was answered locally: {local:?}"
    );
    let stats = redis_cached::stats_for("bench::product").expect("product was called");
    assert_eq!(
        stats.misses, bench.keys,
        "every call of `product` after the warm-up was a hit"
    );
}

/// Stores every key of the hit cases: raw values for redis-rs, entries for `product`; returns
/// the key of `product(id)`'s entry, by id.
async fn prepare(bench: &Bench) -> Vec<String> {
    let mut conn = bench.raw.clone();
    for id in 0..bench.keys {
        let bytes = bincode::serde::encode_to_vec(Product::sample(id), bincode::config::standard())
            .unwrap();
        let () = redis::cmd("SET")
            .arg(raw_key(id))
            .arg(bytes)
            .query_async(&mut conn)
            .await
            .expect("SET");
        product(&bench.cache, id).await;
        product_tagged(&bench.cache, id).await;
    }
    // The local tier: one call starts its invalidation channel; once it is up, a miss then a
    // Redis hit per key leaves a copy of each in the process.
    product_local(&bench.cache, 0).await;
    let mut events = bench.cache.local_events().expect("a local tier");
    events
        .wait_for(|_| bench.cache.local_coherent())
        .await
        .expect("the invalidation channel comes up");
    for id in 0..bench.keys {
        product_local(&bench.cache, id).await;
        product_local(&bench.cache, id).await;
    }
    // The first call of an unreachable cache trips its breaker.
    product(&bench.down, 0).await;
    let mut entries = entries_by_id(&mut bench.raw.clone(), "bench:bench::product:*").await;
    (0..bench.keys)
        .map(|id| entries.remove(&id).expect("every entry found"))
        .collect()
}

const RAW: &str = "raw GET + decode";
const RAW_ENTRY: &str = "raw GET + open, same entry";
const HIT: &str = "hit";
const TAGGED_HIT: &str = "tagged hit";
#[cfg(feature = "peers")]
const PEER_CACHED: &str = "peer: cached (redis)";
#[cfg(feature = "peers")]
const PEER_CACHEKIT: &str = "peer: cachekit-rs (redis, L1 off)";
const LOCAL_HIT: &str = "local hit";
const HAND_MAP: &str = "hand-written RwLock<HashMap> + TTL";
const CONTAINER: &str = "quick_cache get + TTL (container)";
#[cfg(feature = "peers")]
const PEER_MOKA: &str = "peer: moka get_with (in process)";
#[cfg(feature = "peers")]
const PEER_CACHEKIT_L1: &str = "peer: cachekit-rs (L1 on)";
const RAW_ONE_KEY: &str = "raw GET + decode, one key";
const HOT_KEY: &str = "hot key (hit, one key)";
const RAW_MISS: &str = "raw miss: GET + fn + SET";
const MISS: &str = "miss";
const MISS_UNLOCKED: &str = "miss, lock = false";
const MISS_BACKGROUND: &str = "miss, background stores";
const MISS_UNLOCKED_BACKGROUND: &str = "miss, lock = false, background stores";
const DIRECT: &str = "fn called directly";
const BREAKER_OPEN: &str = "breaker open";

/// The cases measured so far.
struct Suite {
    options: Options,
    rows: Vec<Row>,
}

impl Suite {
    /// Measures `op` at `tasks` concurrency after a warm-up; a case measured again (rounds) is
    /// merged into its row.
    async fn case<F, Fut, A>(&mut self, name: &str, tasks: usize, op: F)
    where
        F: Fn(&mut fastrand::Rng) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = A> + Send,
        A: Untimed + 'static,
    {
        if let Some(only) = &self.options.only
            && !only.split('/').any(|n| n == name)
        {
            return;
        }
        let op = Arc::new(op);
        let warm = op.clone();
        measure::run(tasks, self.options.warmup, move |rng| warm(rng)).await;
        let sample = measure::run(tasks, self.options.time, move |rng| op(rng)).await;
        match self
            .rows
            .iter_mut()
            .find(|r| r.case == name && r.tasks == tasks)
        {
            Some(row) => row.sample = row.sample.clone().merge(sample),
            None => self.rows.push(Row {
                case: name.to_string(),
                tasks,
                sample,
            }),
        }
    }

    fn find(&self, name: &str, tasks: usize) -> Option<&Sample> {
        self.rows
            .iter()
            .find(|r| r.case == name && r.tasks == tasks)
            .map(|r| &r.sample)
    }

    /// `a`'s throughput over `b`'s.
    fn ratio(&self, a: &str, b: &str, tasks: usize) -> Option<f64> {
        Some(self.find(a, tasks)?.ops_per_sec() / self.find(b, tasks)?.ops_per_sec())
    }

    fn report(&self) {
        println!();
        println!(
            "{:<36} {:>5} {:>12} {:>10} {:>10} {:>10} {:>8}",
            "case", "tasks", "ops/s", "p50", "p99", "CPU/call", "vs raw"
        );
        for row in &self.rows {
            let vs_raw = self
                .ratio(&row.case, RAW, row.tasks)
                .map_or("-".to_string(), |r| format!("{r:.3}"));
            println!(
                "{:<36} {:>5} {:>12.0} {:>10.1?} {:>10.1?} {:>10.1?} {:>8}",
                row.case,
                row.tasks,
                row.sample.ops_per_sec(),
                row.sample.quantile(0.5),
                row.sample.quantile(0.99),
                row.sample.cpu_per_call(),
                vs_raw,
            );
        }
        println!();
        println!("targets:");
        let show = |what: String, value: Option<f64>, target: &str| {
            if let Some(value) = value {
                println!("  {what:<44} {value:>8.3}  (target {target})");
            }
        };
        for tasks in [1, 64] {
            show(
                format!("hit / raw GET, {tasks} tasks"),
                self.ratio(HIT, RAW, tasks),
                if tasks == 1 { ">= 1.0" } else { ">= 0.97" },
            );
            show(
                format!("hit / raw GET of the same entry, {tasks} tasks"),
                self.ratio(HIT, RAW_ENTRY, tasks),
                "the cache's own work",
            );
        }
        for tasks in [1, 64] {
            show(
                format!("tagged hit / hit, {tasks} tasks"),
                self.ratio(TAGGED_HIT, HIT, tasks),
                "1.0: no extra command",
            );
        }
        for tasks in [1, 64] {
            let cpu = self
                .find(LOCAL_HIT, tasks)
                .map(|s| s.cpu_per_call().as_nanos() as f64);
            show(
                format!("local hit CPU ns/call, {tasks} tasks"),
                cpu,
                "<= 1000",
            );
        }
        for tasks in [1, 64] {
            show(
                format!("local hit / hand-written map, {tasks} tasks"),
                self.ratio(LOCAL_HIT, HAND_MAP, tasks),
                ">= 1.0",
            );
            show(
                format!("container alone / hand-written map, {tasks} tasks"),
                self.ratio(CONTAINER, HAND_MAP, tasks),
                "the floor under the local hit",
            );
            show(
                format!("local hit / container alone, {tasks} tasks"),
                self.ratio(LOCAL_HIT, CONTAINER, tasks),
                "the tier's own work",
            );
        }
        #[cfg(feature = "peers")]
        for tasks in [1, 64] {
            show(
                format!("local hit / moka get_with, {tasks} tasks"),
                self.ratio(LOCAL_HIT, PEER_MOKA, tasks),
                ">= 1.5",
            );
            show(
                format!("local hit / cachekit-rs L1 on, {tasks} tasks"),
                self.ratio(LOCAL_HIT, PEER_CACHEKIT_L1, tasks),
                ">= 3.0",
            );
        }
        #[cfg(feature = "peers")]
        {
            show(
                "hit / cached, 64 tasks".into(),
                self.ratio(HIT, PEER_CACHED, 64),
                ">= 1.0",
            );
            show(
                "hit / cachekit-rs, 64 tasks".into(),
                self.ratio(HIT, PEER_CACHEKIT, 64),
                ">= 3.0",
            );
        }
        show(
            "hot key / raw GET of one key, 64 tasks".into(),
            self.ratio(HOT_KEY, RAW_ONE_KEY, 64),
            ">= 3.0",
        );
        // Miss latency in round trips beyond the function: (p50(miss) - p50(fn)) / p50(raw GET).
        for tasks in [1, 64] {
            let round_trips = |case: &str| {
                let rtt = self.find(RAW, tasks)?.quantile(0.5);
                let function = self.find(DIRECT, tasks)?.quantile(0.5);
                let miss = self.find(case, tasks)?.quantile(0.5);
                Some(miss.saturating_sub(function).as_secs_f64() / rtt.as_secs_f64())
            };
            // Lookup, lock, store; lookup, then the lock alongside the function, then the store
            // (so 3 for a function faster than a round trip); lookup and lock; lookup only.
            for (case, target) in [
                (MISS, "<= 3"),
                (MISS_UNLOCKED, "<= 3"),
                (MISS_BACKGROUND, "<= 2"),
                (MISS_UNLOCKED_BACKGROUND, "<= 1"),
                (RAW_MISS, "2"),
            ] {
                show(
                    format!("{case}, {tasks} tasks: round trips beyond fn"),
                    round_trips(case),
                    target,
                );
            }
        }
        let overhead = || {
            let open = self.find(BREAKER_OPEN, 1)?.ops_per_sec();
            let direct = self.find(DIRECT, 1)?.ops_per_sec();
            Some(1e9 / open - 1e9 / direct)
        };
        show(
            "breaker open, ns per call over direct".into(),
            overhead(),
            "<= 1000",
        );
    }
}
