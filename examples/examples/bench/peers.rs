//! Peer crates on the benchmark's workload, so their Redis-backed memoization can be compared
//! with `#[redis_cache]`. Compiled only with the `peers` feature of `redis-cache-examples`.
//!
//! Each adapter memoizes the same function as the bench, `id -> Product::sample(id)`, with a
//! TTL of 600 s, in the Redis that [`setup`] is given, under its own key prefix:
//!
//! | peer | attribute | keys | value format | in-process cache |
//! | --- | --- | --- | --- | --- |
//! | `cached` 4.1 | `#[concurrent_cached(redis = true)]` | `peer-cached:product:{id}` | MessagePack, structs as arrays (`rmp_serde::to_vec`), in a `{ value, version }` envelope: 161 bytes | none |
//! | `cachekit-rs` 0.13 | `#[cachekit]` | `peer-cachekit:product:{blake2b(args)}` | MessagePack, structs as maps with field names (`rmp_serde::to_vec_named`): 206 bytes | off (`no_l1()`); a second client has it on (10,000 entries) |
//! | `moka` 0.12 | `future::Cache::get_with` | none: in process only | the decoded value | the whole cache |
//!
//! A hit in either adapter is one Redis `GET` on one pipelined connection plus that peer's
//! deserialization; nothing is kept in process between calls. A miss is two round trips in
//! both: the `GET` that missed, then the write (`cached` pipelines `GET` + `PSETEX`, reading back
//! the entry it replaces; `cachekit` sends `SET ... EX`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cached::macros::concurrent_cached;
use cached::{AsyncRedisCache, RedisCacheError};
use cachekit::backend::redis::RedisBackend;
use cachekit::error::CachekitError;
use cachekit::{CacheKit, cachekit};
use redis_cache_tests::fixtures::Product;

/// The TTL both peers write entries with, as in the bench's own `#[redis_cache(ttl = 600)]`.
const TTL_SECS: u64 = 600;

/// Both peers, connected to one Redis. Cheap to clone: the `cached` store is a process-wide
/// static (its macro's own), and a `CacheKit` clone shares its backend and state.
#[derive(Clone)]
pub struct Peers {
    cachekit: CacheKit,
    /// The same client with its L1 (in-process quick_cache layer) on.
    cachekit_l1: CacheKit,
    /// An in-process cache of the same decoded values, for the local tier's comparison.
    moka: moka::future::Cache<u64, Product>,
}

impl fmt::Debug for Peers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peers").finish_non_exhaustive()
    }
}

/// Connects both peers to the Redis at `url` (e.g. `"redis://127.0.0.1:40123/"`), with the key
/// prefixes `peer-cached` and `peer-cachekit`.
///
/// # Panics
///
/// If either peer cannot connect, or if an earlier `setup` in this process connected the
/// `cached` store to a different URL: that store is a static of the `cached` macro, built once
/// per process, so later calls can only reuse it.
pub async fn setup(url: &str) -> Peers {
    install_cached_store(url).await;
    Peers {
        cachekit: connect_cachekit(url, false).await,
        cachekit_l1: connect_cachekit(url, true).await,
        moka: moka::future::Cache::new(100_000),
    }
}

impl Peers {
    /// Memoized through the `cached` crate's Redis store: returns `Product::sample(id)` on a
    /// miss.
    ///
    /// # Panics
    ///
    /// If Redis fails the call (the store's errors have nowhere else to go in the bench).
    pub async fn cached_crate(&self, id: u64) -> Product {
        cached_product(id)
            .await
            .expect("cached crate's Redis store")
    }

    /// Memoized through cachekit-rs with its Redis backend, L1 off: returns
    /// `Product::sample(id)` on a miss.
    ///
    /// # Panics
    ///
    /// If cachekit returns an error. Its macro runs the function uncached on an outage-class
    /// Redis error (timeout, dropped connection) instead of failing, so such errors do not reach
    /// here: they show up as misses.
    pub async fn cachekit(&self, id: u64) -> Product {
        cachekit_product(&self.cachekit, id)
            .await
            .expect("cachekit client")
    }

    /// [`Peers::cachekit`] with cachekit's L1 on: after the first call of a key, hits are
    /// answered in process.
    pub async fn cachekit_l1(&self, id: u64) -> Product {
        cachekit_product(&self.cachekit_l1, id)
            .await
            .expect("cachekit client")
    }

    /// `moka::future::Cache::get_with` of the decoded value: what a hand-written in-process
    /// cache costs per hit.
    pub async fn moka(&self, id: u64) -> Product {
        self.moka
            .get_with(id, async move { Product::sample(id) })
            .await
    }
}

// ---------------------------------------------------------------------------------------------
// `cached`: `#[concurrent_cached(redis = true)]`, the crate's Redis-backed (and async) memoization.
//
// Its store is `AsyncRedisCache`: one `redis::aio::MultiplexedConnection` (feature
// `redis_tokio`; `redis_connection_manager` only wraps the same connection in a reconnecting
// manager, and `redis_async_cache` would add RESP3 client-side caching, an in-process layer),
// values encoded with `rmp-serde` inside a `{ value, version }` envelope, and no in-process cache.
// A hit sends its `GET` as a one-command pipeline, then decodes the envelope.
//
// The macro keeps the store in a static `OnceCell` that it fills on the first call, by default
// from the `CACHED_REDIS_CONNECTION_STRING` environment variable. Setting that variable needs
// `unsafe` in edition 2024, so instead `setup` builds the store from its `url` argument and puts
// it in the macro's static (named by `name` below) before any call; the `create` block only
// reports a call made before `setup`.
// ---------------------------------------------------------------------------------------------

/// Memoized product lookup, stored by the `cached` crate at `peer-cached:product:{id}`.
#[concurrent_cached(
    redis = true,
    name = "CACHED_STORE",
    ty = "AsyncRedisCache<u64, Product>",
    create = { panic!("peers::setup must run before the first call to Peers::cached_crate") },
    key = "u64",
    convert = { id },
    companions = false
)]
async fn cached_product(id: u64) -> Result<Product, RedisCacheError> {
    Ok(Product::sample(id))
}

/// Builds the `cached` store for `url` and installs it as [`cached_product`]'s static.
async fn install_cached_store(url: &str) {
    if let Some(store) = CACHED_STORE.get() {
        let current = store.connection_string();
        assert_eq!(
            current.reveal(),
            url,
            "the cached crate's store is process-wide: it stays connected to the first URL"
        );
        return;
    }
    let store = AsyncRedisCache::builder("product")
        .namespace("peer-cached")
        .connection_string(url)
        .ttl(Duration::from_secs(TTL_SECS))
        .refresh_on_hit(false)
        .build()
        .await
        .unwrap_or_else(|err| panic!("connect the cached crate's store to {url}: {err}"));
    // A concurrent `setup` may have installed one first; either is connected to `url`.
    let _ = CACHED_STORE.set(store).await;
}

// ---------------------------------------------------------------------------------------------
// cachekit-rs: `#[cachekit]`, its memoization decorator, over its Redis backend.
//
// Built with `default-features = false, features = ["redis", "macros", "l1"]`: the "L1 off"
// client turns the in-process quick_cache layer off with `no_l1()`, the "L1 on" one keeps 10,000
// entries in it; no `reliability` (retry, breaker and backpressure stay out of the hot path, as in
// the `minimal` preset; the single-flight for misses is then in-process only), no `encryption`,
// no `cachekitio` (the SaaS). The backend is one `fred` client: one connection, auto-pipelined.
//
// The macro keys each call by the interop/v1 scheme: `{namespace}:{operation}:{args_hash}`,
// where the hash is Blake2b-256 of the MessagePack-encoded arguments (computed on every call),
// so the client itself must carry no `.namespace()`. Values are MessagePack with field names; a
// hit copies the reply out of fred's buffer, walks the document's headers (cachekit's decode
// bounds), then decodes it in place.
// ---------------------------------------------------------------------------------------------

/// Memoized product lookup, stored by cachekit at `peer-cachekit:product:{args_hash}`.
#[cachekit(
    client = cache,
    ttl = 600,
    interop = "product",
    namespace = "peer-cachekit"
)]
async fn cachekit_product(cache: &CacheKit, id: u64) -> Result<Product, CachekitError> {
    Ok(Product::sample(id))
}

/// A cachekit client on the Redis at `url`, with L1 on or off and a default TTL of
/// [`TTL_SECS`].
async fn connect_cachekit(url: &str, l1: bool) -> CacheKit {
    let backend = RedisBackend::builder()
        .url(url)
        .build()
        .unwrap_or_else(|err| panic!("configure cachekit's Redis backend for {url}: {err}"));
    // The connection runs on its own task; dropping its handle leaves it running.
    backend
        .connect()
        .await
        .unwrap_or_else(|err| panic!("connect cachekit's Redis backend to {url}: {err}"));
    let builder = CacheKit::builder()
        .backend(Arc::new(backend))
        .default_ttl(Duration::from_secs(TTL_SECS));
    let builder = if l1 {
        builder.l1_capacity(10_000)
    } else {
        builder.no_l1()
    };
    builder
        .build()
        .unwrap_or_else(|err| panic!("build the cachekit client: {err}"))
}
