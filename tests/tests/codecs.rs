//! Every codec this build has (the tests turn them all on): hit, miss, invalidation, tags and
//! the local tier on each; caches on different codecs sharing one Redis and one prefix (as two
//! services, or two versions of one, would) see misses and then their own entries, never an
//! error; a function's `codec = "json"` overrides its cache's; and a JSON entry is read by the
//! Python script `docs/behaviour.md` gives, with nothing but the standard library and
//! `redis-cli`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use redis_cache_tests::local::{coherent, local_hit};
use redis_cache_tests::{RedisServer, Runs};
use redis_cached::{Cache, Codec, Outcome, redis_cache, stats_for};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
    price_cents: Option<u32>,
    tags: Vec<String>,
}

fn product_of(id: u64) -> Product {
    Product {
        id,
        name: format!("product {id}"),
        price_cents: id.is_multiple_of(2).then_some(1999),
        tags: vec!["home".into(), "é€😀".into()],
    }
}

#[redis_cache(ttl = 300, tags("product:{id}"), skip(cache, runs), cache = cache)]
async fn product(cache: &Cache, runs: &Runs, id: u64) -> Product {
    runs.tick();
    product_of(id)
}

#[redis_cache(ttl = 300, local = 100, skip(cache, runs), cache = cache)]
async fn local_product(cache: &Cache, runs: &Runs, id: u64) -> Product {
    runs.tick();
    product_of(id)
}

#[redis_cache(ttl = 300, batch = ids, skip(cache, runs), cache = cache, name = "codecs::item")]
async fn items(cache: &Cache, runs: &Runs, ids: Vec<u64>) -> HashMap<u64, Product> {
    runs.tick();
    ids.into_iter().map(|id| (id, product_of(id))).collect()
}

#[redis_cache(ttl = 300, skip(cache, runs), cache = cache, name = "codecs::item")]
async fn item(cache: &Cache, runs: &Runs, id: u64) -> Option<Product> {
    runs.tick();
    Some(product_of(id))
}

static REFRESHED: AtomicU64 = AtomicU64::new(0);

#[redis_cache(ttl = 300, stale = 60, refresh = "background", skip(cache), cache = cache)]
async fn refreshed(cache: Cache, id: u64) -> Product {
    REFRESHED.fetch_add(1, SeqCst);
    product_of(id)
}

#[redis_cache(ttl = 300, codec = "json", skip(cache, runs), cache = cache)]
async fn json_product(cache: &Cache, runs: &Runs, id: u64) -> Product {
    runs.tick();
    product_of(id)
}

/// A cache of `redis` in `codec`, with its own prefix.
fn cache_in(redis: &RedisServer, codec: Codec, prefix: &str) -> Cache {
    redis
        .builder()
        .prefix(prefix)
        .codec(codec)
        .build()
        .expect("valid cache")
}

/// The stored entries of `prefix` (not tags' sets, not locks), as raw bytes.
async fn entries(redis: &RedisServer, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for key in redis.keys_but_tags().await {
        if key.starts_with(&format!("{prefix}:")) && !key.ends_with(":lock") {
            let bytes: Vec<u8> = redis.command(&["GET", &key]).await.unwrap();
            out.push((key, bytes));
        }
    }
    out
}

/// Invalid entries counted for `function` so far (a decode of bytes that did not open).
fn invalid(function: &str) -> u64 {
    stats_for(function).map_or(0, |s| s.invalid)
}

#[tokio::test]
async fn each_codec_hits_misses_invalidates_and_stores_its_own_id() {
    let redis = RedisServer::start();
    for &codec in Codec::ENABLED {
        let prefix = format!("codec-{codec}");
        let cache = cache_in(&redis, codec, &prefix);
        let runs = Runs::default();
        let invalid_before = invalid("codecs::product");
        assert_eq!(product(&cache, &runs, 2).await, product_of(2), "{codec}");
        cache.flush().await;
        assert_eq!(product(&cache, &runs, 2).await, product_of(2), "{codec}");
        assert_eq!(runs.count(), 1, "{codec}: the second call is a hit");
        let stored = entries(&redis, &prefix).await;
        assert_eq!(stored.len(), 1, "{codec}: {stored:?}");
        assert_eq!(stored[0].1[3], codec.id(), "{codec}: the header's codec id");

        assert!(product_invalidate(&cache, 2).await.unwrap(), "{codec}");
        assert_eq!(product(&cache, &runs, 2).await, product_of(2), "{codec}");
        assert_eq!(runs.count(), 2, "{codec}: recomputed after `_invalidate`");
        cache.flush().await;

        assert_eq!(
            cache.invalidate_tag("product:2").await.unwrap(),
            1,
            "{codec}"
        );
        assert_eq!(product(&cache, &runs, 2).await, product_of(2), "{codec}");
        assert_eq!(
            runs.count(),
            3,
            "{codec}: recomputed after its tag's invalidation"
        );
        assert_eq!(invalid("codecs::product"), invalid_before, "{codec}");
    }
}

#[tokio::test]
async fn each_codec_fills_and_serves_the_local_tier() {
    let redis = RedisServer::start();
    for &codec in Codec::ENABLED {
        let cache = cache_in(&redis, codec, &format!("codec-local-{codec}"));
        let runs = Runs::default();
        assert_eq!(local_product(&cache, &runs, 3).await, product_of(3));
        cache.flush().await;
        coherent(&cache).await;
        let copy = local_hit("codecs::local_product", || local_product(&cache, &runs, 3)).await;
        assert_eq!(copy, product_of(3), "{codec}");
        assert_eq!(runs.count(), 1, "{codec}: computed once");
    }
}

/// The paths that seal and open away from the plain hit and miss: a batch and the single-item
/// function sharing its entries, a `_refresh`, a background refresh of a stale entry, and the
/// local tier filled from an entry another cache wrote. Each entry is in the cache's codec.
#[tokio::test]
async fn each_codec_batches_refreshes_and_copies_what_another_cache_wrote() {
    let redis = RedisServer::start();
    for &codec in Codec::ENABLED {
        let prefix = format!("codec-paths-{codec}");
        let cache = cache_in(&redis, codec, &prefix);
        let runs = Runs::default();
        let found = items(&cache, &runs, vec![1, 2, 3]).await;
        assert_eq!(found.len(), 3, "{codec}");
        cache.flush().await;
        assert_eq!(item(&cache, &runs, 2).await, Some(product_of(2)), "{codec}");
        assert_eq!(runs.count(), 1, "{codec}: the item was the batch's entry");
        assert_eq!(items(&cache, &runs, vec![2, 3]).await.len(), 2);
        assert_eq!(runs.count(), 1, "{codec}: a batch of hits");
        assert_eq!(item_refresh(&cache, &runs, 2).await, Some(product_of(2)));
        assert_eq!(runs.count(), 2, "{codec}: `_refresh` computes");
        assert_eq!(item(&cache, &runs, 2).await, Some(product_of(2)));
        assert_eq!(runs.count(), 2, "{codec}: and stores what a hit reads");

        // A stale entry (its header rewritten so), refreshed in a task, in the same codec.
        refreshed(cache.clone(), 4).await;
        cache.flush().await;
        let (key, _) = entries(&redis, &prefix)
            .await
            .into_iter()
            .find(|(key, _)| key.contains("::refreshed:"))
            .expect("the entry");
        redis.make_stale(&key).await;
        let before = REFRESHED.load(SeqCst);
        let (value, outcome) = refreshed_with_outcome(cache.clone(), 4).await;
        assert_eq!(
            (value, outcome.outcome()),
            (product_of(4), Outcome::Stale),
            "{codec}"
        );
        cache.flush().await;
        assert_eq!(
            REFRESHED.load(SeqCst),
            before + 1,
            "{codec}: refreshed once"
        );
        let stored: Vec<u8> = redis.command(&["GET", &key]).await.unwrap();
        assert_eq!(
            stored[3],
            codec.id(),
            "{codec}: the refresh stored in the cache's codec"
        );
        let (_, outcome) = refreshed_with_outcome(cache.clone(), 4).await;
        assert_eq!(
            outcome.outcome(),
            Outcome::Hit,
            "{codec}: the refreshed entry reads"
        );

        // Another cache (another process) writes; this one reads it from Redis, then copies it.
        let writer = cache_in(&redis, codec, &prefix);
        let reader = cache_in(&redis, codec, &prefix);
        let runs = Runs::default();
        local_product(&writer, &runs, 12).await;
        writer.flush().await;
        let (value, outcome) = local_product_with_outcome(&reader, &runs, 12).await;
        assert_eq!(
            (value, outcome.outcome()),
            (product_of(12), Outcome::Hit),
            "{codec}"
        );
        coherent(&reader).await;
        // Until this call's own outcome says so: the counter `local_hit` watches is shared with
        // the tests running alongside.
        let mut local = false;
        for _ in 0..100 {
            let (_, outcome) = local_product_with_outcome(&reader, &runs, 12).await;
            if outcome.outcome() == Outcome::LocalHit {
                local = true;
                break;
            }
        }
        assert!(local, "{codec}: no local hit in 100 calls");
        assert_eq!(runs.count(), 1, "{codec}: computed once, by the writer");
    }
}

/// Two caches on one Redis and one prefix, as two processes on different codecs: each finds the
/// other's entry under another key (the codec is in the fingerprint), computes once, and then
/// hits its own. No entry of either is ever decoded by the other.
#[tokio::test]
async fn caches_on_different_codecs_share_nothing_and_never_fail() {
    let redis = RedisServer::start();
    let codecs = Codec::ENABLED;
    assert!(codecs.len() > 1, "the tests build every codec");
    let caches: Vec<Cache> = codecs
        .iter()
        .map(|&codec| cache_in(&redis, codec, "shared"))
        .collect();
    let invalid_before = invalid("codecs::product");
    let fallbacks_before = stats_for("codecs::product").map_or(0, |s| s.fallbacks);
    for (cache, codec) in caches.iter().zip(codecs) {
        let runs = Runs::default();
        assert_eq!(product(cache, &runs, 5).await, product_of(5), "{codec}");
        cache.flush().await;
        assert_eq!(
            runs.count(),
            1,
            "{codec}: the others' entries are not its own"
        );
        assert_eq!(product(cache, &runs, 5).await, product_of(5), "{codec}");
        assert_eq!(runs.count(), 1, "{codec}: then it hits its own");
    }
    let stored = entries(&redis, "shared").await;
    let mut ids: Vec<u8> = stored.iter().map(|(_, bytes)| bytes[3]).collect();
    ids.sort();
    let mut expected: Vec<u8> = codecs.iter().map(|c| c.id()).collect();
    expected.sort();
    assert_eq!(ids, expected, "one entry per codec, each under its own key");
    // Every cache still hits its own after the others wrote theirs.
    for (cache, codec) in caches.iter().zip(codecs) {
        let runs = Runs::default();
        product(cache, &runs, 5).await;
        assert_eq!(runs.count(), 0, "{codec}");
    }
    assert_eq!(invalid("codecs::product"), invalid_before);
    let fallbacks = stats_for("codecs::product").map_or(0, |s| s.fallbacks);
    assert_eq!(fallbacks, fallbacks_before);
}

/// `codec = "json"` on the function wins over its cache's codec: the entry is JSON, whatever the
/// cache stores the others in, and the Python reader of `docs/behaviour.md` reads it.
#[tokio::test]
async fn a_functions_codec_overrides_its_caches_and_python_reads_the_entry() {
    let redis = RedisServer::start();
    let cache = cache_in(&redis, Codec::DEFAULT, "py");
    let runs = Runs::default();
    json_product(&cache, &runs, 8).await;
    cache.flush().await;
    json_product(&cache, &runs, 8).await;
    assert_eq!(runs.count(), 1, "a hit in JSON");
    let stored = entries(&redis, "py").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let (key, bytes) = &stored[0];
    assert_eq!(bytes[3], Codec::Json.id());

    let script = python_reader();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .arg(key)
        .env("REDIS_CLI", format!("redis-cli -p {}", redis.port()))
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Product = serde_json::from_slice(&out.stdout).expect("the script prints JSON");
    assert_eq!(printed, product_of(8));
}

/// The script in `docs/behaviour.md`'s envelope section (its only `python` block), as a reader
/// would copy it.
fn python_reader() -> String {
    let doc = include_str!("../../docs/behaviour.md");
    let start = doc.find("```python\n").expect("a python block") + "```python\n".len();
    let end = start + doc[start..].find("```").expect("its end");
    doc[start..end].to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Reading {
    value: f64,
}

#[redis_cache(ttl = 300, skip(cache, runs), cache = cache)]
async fn reading(cache: &Cache, runs: &Runs) -> Reading {
    runs.tick();
    Reading { value: f64::NAN }
}

/// Whether values read back is judged per codec: a `NaN` does not in JSON (written as `null`),
/// so the function stops storing there, and keeps caching in bincode.
#[tokio::test]
async fn a_value_that_does_not_read_back_in_one_codec_stops_that_codec_only() {
    let redis = RedisServer::start();
    let json = cache_in(&redis, Codec::Json, "nan-json");
    let binary = cache_in(&redis, Codec::Bincode, "nan-bincode");
    let runs = Runs::default();
    reading(&json, &runs).await;
    reading(&json, &runs).await;
    assert_eq!(runs.count(), 2, "nothing stored in JSON: each call runs");
    assert!(entries(&redis, "nan-json").await.is_empty());
    reading(&binary, &runs).await;
    binary.flush().await;
    reading(&binary, &runs).await;
    assert_eq!(runs.count(), 3, "bincode stores it and hits");
    assert_eq!(entries(&redis, "nan-bincode").await.len(), 1);
}
