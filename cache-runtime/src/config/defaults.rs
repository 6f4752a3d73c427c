//! The named defaults every [`CacheBuilder`](crate::CacheBuilder) setting starts from.

use std::time::Duration;

/// Where the cache connects when `REDIS_URL` is not set.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
/// First segment of every key when `REDIS_CACHE_PREFIX` is not set.
pub const DEFAULT_PREFIX: &str = "rcache";
/// How long establishing a connection may take. A cache that is slower than the database behind
/// it is worse than none, so this is short.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
/// How long one Redis command may take before the call goes on without the cache.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(100);

/// Command timeouts or dropped connections in a row that open a cache's circuit breaker (one
/// failed connection attempt opens it at once).
pub const DEFAULT_BREAKER_THRESHOLD: u32 = 5;
/// How long an open circuit breaker first lets calls skip Redis before one call probes it (and
/// reconnects); each failed probe doubles it.
pub const DEFAULT_BREAKER_MIN_OPEN: Duration = Duration::from_millis(100);
/// The longest interval between probes of an open circuit breaker.
pub const DEFAULT_BREAKER_MAX_OPEN: Duration = Duration::from_secs(2);
/// Largest entry (header and payload, after compression) the cache stores. Bigger values are
/// returned but not stored, counted in `oversize` and logged once per function: one huge value
/// blocks single-threaded Redis for every other client while it is copied.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Payloads longer than this are LZ4-compressed (kept only if that saves an eighth). Measured
/// (`examples/compression.rs`): from about 3 KB compressed hits are faster even on loopback,
/// below that within noise, and entries take 3 to 19 times less memory.
pub const DEFAULT_COMPRESS_ABOVE: usize = 1024;
/// Keys per command of a batch call (`batch = ...`): its lookup is one `MGET` of at most this
/// many keys (its locks and stores, one pipeline), larger batches several, sent at once. Redis
/// runs one command at a time, so this bounds how long a batch holds it (measured, see
/// docs/batches.md: about 33 µs of server time for 256 entries of 232 bytes; past 256 the cost
/// per key falls no further).
pub const DEFAULT_BATCH_CHUNK: usize = 256;
/// How long a per-key lock lives without renewal. Its holder renews it every third of this while
/// the function runs, so this bounds how long a crashed process blocks a key, not how long a
/// function may take.
pub const DEFAULT_LOCK_LEASE: Duration = Duration::from_secs(3);
/// How long a miss waits for another process computing the same key before it computes the
/// value itself (fail open).
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(5);
/// The fraction of the TTL by which each entry's expiry is randomly shortened when the attribute
/// does not say `jitter = ...`: entries written together (a deploy, a batch) do not all expire
/// in the same second.
pub const DEFAULT_TTL_JITTER: f64 = 0.1;
/// Whether a miss returns before its store has landed. Off: the caller waits for the store (one
/// round trip), so a value is in Redis when the call returns, even in a process that exits right
/// after it. See [`CacheBuilder::background_stores`](crate::CacheBuilder::background_stores).
pub const DEFAULT_BACKGROUND_STORES: bool = false;
/// Whether lookups made at the same time share one pipeline. On: under concurrency, one write
/// and one read for many hits. See
/// [`CacheBuilder::auto_pipeline`](crate::CacheBuilder::auto_pipeline).
pub const DEFAULT_AUTO_PIPELINE: bool = true;
/// How long a copy in the local tier (`local = N`) is served before it is read from Redis again,
/// when the function does not say `local_ttl = ...`. While Redis's invalidation messages arrive,
/// a change removes copies at once and this only bounds how long one is trusted without a fresh
/// look; when they cannot (the channel dropped, Redis down, tracking refused), it is the
/// longest a copy can be stale. Never longer than the entry's own TTL.
pub const DEFAULT_LOCAL_TTL: Duration = Duration::from_secs(30);
/// The memory the local tier of one cache may take, estimated from the stored size of its
/// values (see [`CacheBuilder::local_max_bytes`](crate::CacheBuilder::local_max_bytes)).
pub const DEFAULT_LOCAL_MAX_BYTES: usize = 64 * 1024 * 1024;
