//! Micro-benchmarks of what a hit does besides its round trip, with the allocations of each
//! step counted.
//!
//! ```text
//! cargo bench -p redis-cache-examples --bench hit_path
//! ```
//!
//! - `key`: hashing the arguments and rendering the Redis key, for a `u64` and for a 4 KiB
//!   argument;
//! - `decode`: opening the envelope of a ~200-byte value and of a 100-item list (LZ4-compressed);
//! - `hit`: one whole hit of an annotated function against a `redis-server` on loopback, next to
//!   the raw redis-rs `GET` + decode of the same value, on a current-thread runtime so that every
//!   allocation of the call (the connection's driver task included) is counted on this thread;
//!   and a local hit next to the hand-written map it replaces.

use std::sync::LazyLock;

use divan::{AllocProfiler, Bencher, black_box};
use redis_cache_tests::RedisServer;
use redis_cache_tests::fixtures::Product;
use redis_cached::__private::bench;
use redis_cached::__private::{KeyBuilder, SiteSpec};
use redis_cached::{Cache, redis_cache};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

static SPEC: SiteSpec = SiteSpec {
    module: "hit_path",
    function: "product",
    name: None,
    ttl_secs: 300,
    none_ttl_secs: 0,
    version: 0,
    value_type: "Product",
    stale_secs: 0,
    early_refresh: true,
    jitter: None,
    wait_for_lock: true,
    local_entries: 0,
    local_ttl_secs: 0,
    tags: "",
    stores_none: false,
    batch: false,
    codec: None,
};

mod key {
    use super::*;

    #[divan::bench]
    fn small_u64(bencher: Bencher<'_, '_>) {
        let fingerprint = bench::fingerprint(&SPEC);
        bencher.bench_local(|| {
            let mut key = KeyBuilder::new();
            key.arg(black_box(&42u64));
            bench::key("app", &SPEC, fingerprint, &key.finish())
        });
    }

    #[divan::bench]
    fn large_4kib_string(bencher: Bencher<'_, '_>) {
        let text = "x".repeat(4096);
        let fingerprint = bench::fingerprint(&SPEC);
        bencher.bench_local(|| {
            let mut key = KeyBuilder::new();
            key.arg(black_box(text.as_str()));
            bench::key("app", &SPEC, fingerprint, &key.finish())
        });
    }
}

mod decode {
    use super::*;

    #[divan::bench]
    fn small_product(bencher: Bencher<'_, '_>) {
        let bytes = bench::seal(&Product::sample(7), redis_cached::DEFAULT_COMPRESS_ABOVE);
        bencher.bench_local(|| bench::open::<Product>(black_box(&bytes)).expect("decodes"));
    }

    /// What the hand-written read decodes: the same value, bincode alone (no envelope, no
    /// limits). `small_product` minus this is the envelope's and the decode guard's price.
    #[divan::bench]
    fn small_product_bare_bincode(bencher: Bencher<'_, '_>) {
        let config = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(Product::sample(7), config).unwrap();
        bencher.bench_local(|| {
            let (value, _): (Product, usize) =
                bincode::serde::decode_from_slice(black_box(&bytes), config).unwrap();
            value
        });
    }

    /// What a local hit pays for its value with decoded copies: a clone. Keeping the envelope
    /// bytes instead (no `Clone` bound) would pay `small_product`'s decode on every local hit.
    #[divan::bench]
    fn small_product_clone(bencher: Bencher<'_, '_>) {
        let product = Product::sample(7);
        bencher.bench_local(|| black_box(&product).clone());
    }

    #[divan::bench]
    fn large_100_products_lz4(bencher: Bencher<'_, '_>) {
        let list: Vec<Product> = (0..100).map(Product::sample).collect();
        let bytes = bench::seal(&list, redis_cached::DEFAULT_COMPRESS_ABOVE);
        bencher.bench_local(|| bench::open::<Vec<Product>>(black_box(&bytes)).expect("decodes"));
    }
}

mod hit {
    use super::*;

    /// A server, a cache on it, a raw connection and a current-thread runtime, shared by the
    /// two benchmarks.
    struct World {
        runtime: tokio::runtime::Runtime,
        cache: Cache,
        raw: redis::aio::MultiplexedConnection,
        _redis: RedisServer,
    }

    static WORLD: LazyLock<World> = LazyLock::new(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let redis = RedisServer::start();
        let cache = redis.cache("hit-path");
        let raw = runtime.block_on(async {
            let mut raw = redis.connection().await;
            let bytes =
                bincode::serde::encode_to_vec(Product::sample(1), bincode::config::standard())
                    .unwrap();
            let () = redis::cmd("SET")
                .arg("raw:1")
                .arg(bytes)
                .query_async(&mut raw)
                .await
                .unwrap();
            product(&cache, 1).await;
            // The local tier's copy: a miss, its channel up, then a read from Redis.
            product_local(&cache, 1).await;
            let mut events = cache.local_events().expect("a local tier");
            let _ = events.wait_for(|_| cache.local_coherent()).await;
            product_local(&cache, 1).await;
            raw
        });
        World {
            runtime,
            cache,
            raw,
            _redis: redis,
        }
    });

    #[redis_cache(ttl = 3600, skip(cache), cache = cache)]
    async fn product(cache: &Cache, id: u64) -> Product {
        Product::sample(id)
    }

    #[divan::bench]
    fn raw_get_and_decode(bencher: Bencher<'_, '_>) {
        let world = &*WORLD;
        bencher.bench_local(|| {
            world.runtime.block_on(async {
                let mut raw = world.raw.clone();
                let bytes: Vec<u8> = redis::cmd("GET")
                    .arg("raw:1")
                    .query_async(&mut raw)
                    .await
                    .unwrap();
                let (value, _): (Product, usize) =
                    bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
                value
            })
        });
    }

    #[divan::bench]
    fn redis_cache_hit(bencher: Bencher<'_, '_>) {
        let world = &*WORLD;
        bencher.bench_local(|| world.runtime.block_on(product(&world.cache, 1)));
    }

    #[redis_cache(ttl = 3600, local = 1000, skip(cache), cache = cache)]
    async fn product_local(cache: &Cache, id: u64) -> Product {
        Product::sample(id)
    }

    /// A local hit: no round trip, a clone of the decoded copy.
    #[divan::bench]
    fn redis_cache_local_hit(bencher: Bencher<'_, '_>) {
        let world = &*WORLD;
        bencher.bench_local(|| world.runtime.block_on(product_local(&world.cache, 1)));
    }

    /// What the local tier replaces, written by hand: a map of values with their expiry, a read
    /// lock, a TTL check and a clone.
    #[divan::bench]
    fn hand_written_map(bencher: Bencher<'_, '_>) {
        let world = &*WORLD;
        let until = std::time::Instant::now() + std::time::Duration::from_secs(3600);
        let map = std::sync::RwLock::new(
            (0..1000u64)
                .map(|id| (id, (until, Product::sample(id))))
                .collect::<std::collections::HashMap<_, _>>(),
        );
        bencher.bench_local(|| {
            world.runtime.block_on(async {
                let map = map.read().unwrap();
                let (until, product) = map.get(&black_box(1)).unwrap();
                (std::time::Instant::now() < *until).then(|| product.clone())
            })
        });
    }
}
