// Tags: `tags("product:{id}")` and `tags = |v| ...`, `Cache::invalidate_tag`.

use std::time::{Duration, Instant};

use redis_cached::{Cache, redis_cache, snapshot};

/// A function's name as stats show it: this module's path, then the function.
fn name(function: &str) -> String {
    format!("{}::{function}", module_path!())
}
use redis_cache_tests::Runs;

#[redis_cache(ttl = 300, tags("product:{id}", "catalog"), skip(cache, runs), cache = cache)]
async fn product_summary(cache: &Cache, runs: &Runs, id: u64) -> String {
    runs.tick();
    format!("summary {id}")
}

#[redis_cache(ttl = 300, tags("product:{id}", "locale:{locale}"), skip(cache, runs), cache = cache)]
async fn product_page(cache: &Cache, runs: &Runs, id: u64, locale: String) -> String {
    runs.tick();
    format!("page {id} {locale}")
}

/// Tags from the value: every product in the page.
#[redis_cache(
    ttl = 300,
    tags = |ids: &Vec<u64>| ids.iter().map(|id| format!("product:{id}")),
    skip(cache, runs),
    cache = cache
)]
async fn search(cache: &Cache, runs: &Runs, query: String) -> Vec<u64> {
    runs.tick();
    query.split(',').map(|id| id.parse().unwrap()).collect()
}

#[redis_cache(ttl = 300, skip(cache, runs), cache = cache)]
async fn untagged(cache: &Cache, runs: &Runs, id: u64) -> u64 {
    runs.tick();
    id
}

#[tokio::test]
async fn a_tag_removes_its_entries_in_every_function_and_nothing_else() {
    let redis = start();
    let cache = redis.cache("tags");
    let runs = Runs::default();
    let all = || async {
        for id in [1, 2] {
            product_summary(&cache, &runs, id).await;
            for locale in ["en", "fr"] {
                product_page(&cache, &runs, id, locale.into()).await;
            }
            untagged(&cache, &runs, id).await;
        }
        search(&cache, &runs, "1,3".into()).await;
        search(&cache, &runs, "2,3".into()).await;
    };
    all().await;
    assert_eq!(runs.count(), 10);
    all().await;
    assert_eq!(runs.count(), 10, "all cached");

    let before = snapshot().tag_invalidations;
    // product 1: its summary, its two pages, and the search page that lists it.
    assert_eq!(cache.invalidate_tag("product:1").await.unwrap(), 4);
    assert!(snapshot().tag_invalidations > before);
    all().await;
    assert_eq!(runs.count(), 14, "exactly the four entries of product 1 were recomputed");
    // A recomputation that began right after the invalidation may not have been stored (the
    // fence errs toward dropping, see docs/invalidation.md): the next calls store it.
    all().await;
    let settled = runs.count();
    assert!((14..=18).contains(&settled), "{settled}");
    assert_eq!(cache.invalidate_tag("product:1").await.unwrap(), 4, "tagged again");

    // What is left of `locale:fr` and `catalog` once product 1 is gone: product 2's.
    assert_eq!(cache.invalidate_tags(&["locale:fr", "catalog"]).await.unwrap(), 2);
    assert_eq!(cache.invalidate_tag("nothing:here").await.unwrap(), 0);
    all().await;
    assert_eq!(
        runs.count(),
        settled + 6,
        "the 4 of product 1, product 2's fr page and summary"
    );
}

#[redis_cache(ttl = 300, tags("user:{name}"), skip(cache, runs), cache = cache)]
async fn by_name(cache: &Cache, runs: &Runs, name: String) -> String {
    runs.tick();
    name
}

#[tokio::test]
async fn a_tag_value_cannot_reach_other_tags_or_keys() {
    let redis = start();
    let cache = redis.cache("tag-chars");
    let runs = Runs::default();
    for name in ["a*", "ab", "a b", "{x}"] {
        by_name(&cache, &runs, name.into()).await;
    }
    // A glob in the value is a character like any other: `a*` is not a pattern.
    assert_eq!(cache.invalidate_tag("user:a*").await.unwrap(), 1);
    assert_eq!(cache.invalidate_tag("user:a b").await.unwrap(), 1);
    assert_eq!(cache.invalidate_tag("user:{x}").await.unwrap(), 1);
    for name in ["a*", "ab", "a b", "{x}"] {
        by_name(&cache, &runs, name.into()).await;
    }
    assert_eq!(runs.count(), 7, "only `ab` was still cached");
    let keys = redis.keys().await;
    let prefix = format!("{}:", redis.prefix("tag-chars"));
    assert!(
        keys.iter().all(|k| k.starts_with(&prefix)),
        "every key under the prefix: {keys:?}"
    );
}

#[redis_cache(ttl = 1, jitter = 0.0, tags("group:{group}", "short"), skip(cache), cache = cache)]
async fn short_lived(cache: &Cache, group: u64, id: u64) -> u64 {
    group + id
}

#[tokio::test]
async fn tag_structures_expire_with_their_entries() {
    let redis = start();
    let cache = redis.cache("tag-expiry");
    for id in 0..2_000 {
        short_lived(&cache, id % 10, id).await;
    }
    let tag_keys = |keys: Vec<String>| keys.into_iter().filter(|k| k.contains(":#tag:")).count();
    assert_eq!(tag_keys(redis.keys().await), 11, "ten groups and `short`");
    // Expiry is Redis's clock, not an event: look until every key is gone, for a bounded time.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let keys = redis.keys().await;
        if keys.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still there after a minute: {} keys", keys.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[redis_cache(ttl = 300, local = 100, tags("item:{id}"), skip(cache, runs), cache = cache)]
async fn local_tagged(cache: &Cache, runs: &Runs, id: u64) -> u64 {
    runs.tick();
    id * 1000 + runs.count()
}

#[tokio::test]
async fn this_process_drops_its_local_copies_of_a_tag_before_invalidate_tag_returns() {
    let redis = start();
    let cache = redis.cache("tag-local");
    let runs = Runs::default();
    // The first call starts the local tier's channel; copies are kept once it is up.
    let first = local_tagged(&cache, &runs, 1).await;
    redis_cache_tests::local::coherent(&cache).await;
    // A copy in this process (the Redis hit that keeps one may come a call later).
    let copied = redis_cache_tests::local::local_hit(&name("local_tagged"), || {
        local_tagged(&cache, &runs, 1)
    })
    .await;
    assert_eq!(copied, first);
    assert_eq!(cache.invalidate_tag("item:1").await.unwrap(), 1);
    // No waiting for Redis's announcement: the copy went with the entry.
    assert_ne!(local_tagged(&cache, &runs, 1).await, first);
}
