//! **redis_cache**: memoize `async fn`s (and blocking `fn`s) in Redis with one attribute.
//!
//! ```no_run
//! use redis_cached::redis_cache;
//! # #[derive(serde::Serialize, serde::Deserialize)] struct Product;
//! # #[derive(Debug)] struct DbError; struct Db;
//! # impl Db { async fn load(&self, id: u64) -> Result<Product, DbError> { Ok(Product) } }
//!
//! #[redis_cache(ttl = 300, skip(db))]
//! async fn product(db: &Db, id: u64) -> Result<Product, DbError> {
//!     db.load(id).await
//! }
//! ```
//!
//! The call's arguments (all but those in `skip`) are hashed into a key; on a hit the stored value
//! is decoded and returned without running the body; on a miss the body runs and its value is
//! stored for `ttl` seconds. `Err` and `None` are not stored. When Redis is unreachable, slow or
//! holds garbage, the body simply runs: callers never see a cache error.
//!
//! The repository's README and its `docs/` have the full contract; in short:
//!
//! | option | meaning |
//! |---|---|
//! | `ttl = N` | required: seconds an entry lives (at least 1), or a duration string: `"90s"`, `"5m"`, `"2h"`, `"1d"`, `"1h30m"` (also for `none_ttl` and `stale`); or an expression (`u64` seconds or `Duration`, per call); or a closure over the value, `ttl = \|v: &T\| ...` |
//! | `unless = \|v: &T\| ...` | `true`: return the value without storing it |
//! | `skip(a, b)` | parameters left out of the key (pools, clients, loggers); every other parameter must be `Serialize` |
//! | `version = N` | bump when the stored type's shape changes: the function moves to new keys |
//! | `name = "..."` | the key's function segment instead of `module_path::fn_name` (keeps keys across renames) |
//! | `cache = expr` | use this [`Cache`] (anything that dereferences to one) instead of the default |
//! | `none_ttl = N` | for `Option<T>`: also store `None`, for N seconds (a duration string, or an expression evaluated per call) |
//! | `include_self` | for methods: hash `self` into the key too (it must be `Serialize`) |
//! | `stale = N` | keep entries N seconds past their TTL, served while one caller refreshes (and if that refresh fails) |
//! | `early_refresh = false` | no probabilistic early refresh (XFetch) of entries close to expiry |
//! | `tags("product:{id}", ...)` | tag the entry (placeholders: arguments' `Display`), for [`Cache::invalidate_tag`]; `tags = \|v: &T\| iter` tags it from the value |
//! | `refresh = "background"` | early and stale refreshes run in a spawned task, so no caller waits for them; parameters must be owned and `Send + 'static`, `Self: Clone` for `&self` |
//! | `soft_timeout = "200ms"` | with `stale`: the caller refreshing an entry waits that long at most, then is served the entry while the refresh goes on and stores; the same parameter rules |
//! | `jitter = F` | shorten each TTL by a random fraction up to F, 0.0 to 0.5 (default [`DEFAULT_TTL_JITTER`]) |
//! | `lock = false` | on a miss, never wait for another process: the lock is taken concurrently with the function (the one holding it stores; for one lock lease after an invalidation of the key, none does) |
//! | `companions = false` | no `{fn}_invalidate` / `{fn}_refresh` / `{fn}_stats` / `{fn}_with_outcome` companions (trait impls need this) |
//! | `key = EXPR` | hash this `Serialize` expression (over the arguments and `self`) instead of the arguments |
//! | `condition = EXPR` | a `bool` over the arguments (and `self`), evaluated first: `false` runs the function without the cache (counted in `bypassed`) |
//! | `local = N` | keep up to N decoded entries in this process (the value must be `Clone`), kept coherent by Redis's invalidation messages |
//! | `local_ttl = S` | serve a local copy for at most S seconds without Redis's confirmation (default [`DEFAULT_LOCAL_TTL`]; the invalidation channel confirms copies while it is up) |
//! | `batch = ids` | a batch function: `ids` holds the keys (`Vec<K>`, `&[K]`, `HashSet<K>`, `BTreeSet<K>`), it returns `HashMap<K, V>` or `BTreeMap<K, V>` (optionally in `Result`); each key is an entry, the cached ones are read in one round trip (in chunks of [`CacheBuilder::batch_chunk`]) and the function is called once with the others |
//!
//! # Choosing what is cached
//!
//! One example per form (`T` in a closure is the stored value: the `Ok` of a `Result`, the
//! `Some` of an `Option`, otherwise the return type):
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use redis_cached::redis_cache;
//! use serde::{Deserialize, Serialize};
//! # #[derive(Serialize, Deserialize, Clone)] pub struct Item;
//! # #[derive(Serialize, Deserialize)] pub struct Token { expires_in: u64 }
//! # pub struct User { id: u64, is_admin: bool }
//! # pub struct Settings { product_ttl: Duration, missing_ttl: u64 }
//! # fn settings() -> Settings { Settings { product_ttl: Duration::from_secs(60), missing_ttl: 30 } }
//! # pub struct Db;
//!
//! // A duration string, checked at compile time.
//! #[redis_cache(ttl = "1h30m")]
//! async fn catalog(id: u64) -> Vec<Item> { vec![] }
//!
//! // From configuration, on each call (`u64` seconds or a `Duration`); `None` remembered too.
//! #[redis_cache(ttl = settings().product_ttl, none_ttl = settings().missing_ttl)]
//! async fn product(id: u64) -> Option<Item> { None }
//!
//! // The same, named so that a batch function can share its entries (below).
//! #[redis_cache(ttl = 300, name = "shop::product")]
//! async fn product_by_id(id: u64) -> Option<Item> { None }
//!
//! // From the value: a token carries its own lifetime.
//! #[redis_cache(ttl = |t: &Token| Duration::from_secs(t.expires_in))]
//! async fn token(client: String) -> Result<Token, String> { Err(client) }
//!
//! // Not cached for some callers (no lookup, no store; counted in `bypassed`), keyed by one field.
//! #[redis_cache(ttl = 300, condition = !user.is_admin, key = user.id)]
//! async fn dashboard(user: &User) -> Vec<Item> { vec![] }
//!
//! // Returned but not stored when the value says so.
//! #[redis_cache(ttl = 60, unless = |page: &Vec<Item>| page.is_empty())]
//! async fn search(query: String) -> Vec<Item> { vec![] }
//!
//! // Lists of ids: each id an entry of its own, one round trip for the cached ones, one call
//! // for the others; shares its entries with `product_by_id` (same name, `Option<Item>`).
//! #[redis_cache(ttl = 300, batch = ids, name = "shop::product")]
//! async fn products(ids: Vec<u64>) -> std::collections::HashMap<u64, Item> {
//!     Default::default()
//! }
//!
//! // Refreshed in a spawned task: owned parameters, a shared handle skipped from the key.
//! #[redis_cache(ttl = "5m", stale = "1m", refresh = "background", skip(db))]
//! async fn prices(db: Arc<Db>, region: String) -> Result<Vec<u64>, String> { Ok(vec![]) }
//! ```
//!
//! Stampede protection is on by default: concurrent calls of one key in a process share one
//! execution, and one process computes a missing key while the others wait for it (a per-key
//! Redis lock, see [`CacheBuilder::lock_lease`] and [`CacheBuilder::lock_wait`]).
//!
//! Each function also gets `{fn}_invalidate(..)` (drop the entry of those arguments; it takes
//! only the parameters the key is made of, so not the skipped ones), `{fn}_refresh(..)`
//! (recompute and store it: write-through; the function's parameters), `{fn}_with_outcome(..)`
//! (the call, with its [`CallOutcome`]: hit, miss, stale... and the served entry's age) and
//! `{fn}_stats()` (its
//! [`FunctionStats`]); a computation that started before an invalidation or a refresh never
//! writes its older value back. [`Cache::clear_function`], [`Cache::clear_prefix`] and
//! [`Cache::clear`] remove many entries at once. Counters and latencies: [`snapshot`]; with the
//! `metrics` feature they also go to the `metrics` facade, and the `admin` feature serves them
//! (and clears) over HTTP.
//!
//! # Codecs and features
//!
//! Values are stored with serde in the cache's [`Codec`]: each codec is a cargo feature,
//! `bincode` (on by default), `postcard`, `json` and `msgpack`; [`CacheBuilder::codec`] picks one
//! for a cache and `#[redis_cache(codec = "json")]` one for a function (naming a codec whose
//! feature is off is a compile error). The codec is part of every key's fingerprint, so a change
//! of codec moves a function to new keys: misses, never a decode error. To build without bincode
//! (flagged unmaintained upstream), turn the default features off and one codec on:
//! `redis-cached = { version = "0.1", default-features = false, features = ["postcard"] }`; keys
//! move once (the codec is part of their fingerprint). The other features: `tls` (`rediss://`), `metrics` (the `metrics`
//! facade), `admin` (an axum router for stats and clears).
//!
//! # Blocking functions
//!
//! The attribute also takes a plain `fn`, for a synchronous database driver, a thread pool or a
//! program without an async runtime. It blocks its caller for the lookup (and the function, on a
//! miss) and takes the same options, but `refresh = "background"` and `soft_timeout` (they would
//! run the body in a task); its companions block too:
//!
//! ```no_run
//! use redis_cached::redis_cache;
//! # #[derive(serde::Serialize, serde::Deserialize, Clone)] struct Product;
//! # struct Conn; impl Conn { fn load(&self, id: u64) -> Result<Product, String> { Ok(Product) } }
//!
//! #[redis_cache(ttl = 300, local = 10_000, skip(conn))]
//! fn product(conn: &Conn, id: u64) -> Result<Product, String> {
//!     conn.load(id)
//! }
//!
//! # fn main() {
//! # let conn = Conn;
//! let found = product(&conn, 7); // from any thread, with or without a runtime
//! product_invalidate(7).ok();
//! redis_cached::block_on(redis_cached::default_cache().flush());
//! # }
//! ```
//!
//! A blocking call runs the same flow as an `async` one, on its own thread, parked while it
//! waits; the bytes are moved by the cache's I/O thread (`redis-cache-io`, one Tokio worker
//! started on the first blocking call), on connections made there. So a blocking call does not
//! wait on the runtime its caller may be running on: one made inside a task of a current-thread
//! runtime, whose only thread it holds, is answered all the same (it does not follow an `async`
//! call of the same key there, but meets it at the key's Redis lock). The body runs in the
//! caller's runtime context, if any, and cannot `.await`. Called from `async` code, it
//! blocks that task's worker like any blocking call (use `spawn_blocking`, or the `async`
//! twin). The fail-open bounds are the same: Redis down or slow costs at most the configured
//! timeouts. [`block_on`] runs the cache's `async` methods ([`Cache::flush`],
//! [`Cache::invalidate_tag`]...) the same way; a blocking flush waits for the work of blocking
//! calls.
//!
//! # Runtimes
//!
//! The cache's I/O runs on Tokio (either flavour). An `async` cached function called outside a
//! Tokio runtime (another executor, a hand-rolled `block_on`) runs uncached, and the cache says
//! so once on stderr (at `warn` with a `tracing` subscriber). Connections are made on the runtime of
//! the call that opens them; when that runtime ends (one `#[tokio::test]` after another, each
//! with its runtime, and a cache in a `static`), the next call connects again on its own runtime
//! without an error, so hit counts in tests are exact.
//!
//! Everything that turns caching off or bypasses it is said once on stderr when no `tracing`
//! subscriber is installed (`REDIS_CACHE_QUIET=1` silences it): Redis unreachable, an invalid
//! configuration (use [`Cache::from_env`] at start-up to fail fast instead), no Tokio runtime,
//! a server refusing client-side caching, and a value type whose `Serialize` and `Deserialize`
//! disagree (its values would never read back: the function stops storing).
//!
//! `self` is left out of the key by default because a receiver is usually a service handle (a
//! repository, a client) whose identity says nothing about the answer, and often is not
//! `Serialize`. If the answer does depend on `self`'s state, say `include_self`.

// Where the code lives, one module per concern, and the one word for each concept: see
// docs/layout.md (for contributors; the crate's users see the docs above).

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub mod admin;

mod blocking;
mod breaker;
mod cache;
mod codec;
mod config;
mod connection;
mod envelope;
mod error;
mod flow;
mod freshness;
mod health;
mod invalidation;
mod key;
mod local;
mod notice;
mod policy;
mod site;
mod spec;
mod stampede;
mod stats;
mod sync;
mod tags;
mod tasks;

pub use blocking::block_on;
pub use breaker::{BreakerState, BreakerStats, NodeBreaker};
pub use cache::{Cache, default_cache, set_default};
pub use codec::Codec;
pub use config::{
    CacheBuilder, ConfigError, DEFAULT_AUTO_PIPELINE, DEFAULT_BACKGROUND_STORES,
    DEFAULT_BATCH_CHUNK, DEFAULT_BREAKER_MAX_OPEN, DEFAULT_BREAKER_MIN_OPEN,
    DEFAULT_BREAKER_THRESHOLD, DEFAULT_COMMAND_TIMEOUT, DEFAULT_COMPRESS_ABOVE,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_LOCAL_MAX_BYTES, DEFAULT_LOCAL_TTL, DEFAULT_LOCK_LEASE,
    DEFAULT_LOCK_WAIT, DEFAULT_MAX_VALUE_BYTES, DEFAULT_PREFIX, DEFAULT_TTL_JITTER, DEFAULT_URL,
    ENV_CLUSTER_URLS, ENV_COMMAND_TIMEOUT_MS, ENV_CONNECT_TIMEOUT_MS, ENV_PASSWORD, ENV_PREFIX,
    ENV_QUIET, ENV_READER_URL, ENV_SENTINEL_MASTER, ENV_SENTINEL_URLS, ENV_TLS_CA_FILE,
    ENV_TLS_CERT_FILE, ENV_TLS_KEY_FILE, ENV_URL, ENV_USERNAME,
};
pub use connection::refusal::ACL_COMMANDS;
pub use error::CacheError;
pub use flow::CallOutcome;
pub use health::{HealthError, RedisHealth};
pub use redis_cached_macros::redis_cache;
pub use stats::{FunctionStats, Latency, Outcome, Snapshot, snapshot, stats, stats_for};

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
