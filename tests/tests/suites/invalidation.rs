// Invalidation: the `_invalidate` and `_refresh` companions, clearing a function or a prefix, and
// the fence that keeps a computation that started before an invalidation from writing its old
// value back. Included by `suite!` (`tests/invalidation.rs`, `tests/cluster.rs`), where `start()`
// gives the deployment.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use redis_cached::{Cache, CacheError, redis_cache, stats_for};
use redis_cache_tests::Gate;
use redis_cache_tests::deployment::{AnyConnection, Deployment};

/// A stand-in for the database: values that writers change.
#[derive(Default)]
struct Db {
    rows: Mutex<HashMap<u64, u64>>,
    reads: AtomicU64,
}

impl Db {
    fn get(&self, id: u64) -> u64 {
        self.reads.fetch_add(1, SeqCst);
        *self.rows.lock().unwrap().get(&id).unwrap_or(&0)
    }

    fn set(&self, id: u64, value: u64) {
        self.rows.lock().unwrap().insert(id, value);
    }
}

#[redis_cache(ttl = 300, early_refresh = false, skip(cache, db), cache = cache)]
async fn price(cache: &Cache, db: &Db, id: u64) -> u64 {
    db.get(id)
}

#[tokio::test]
async fn invalidate_removes_exactly_the_entry_of_its_arguments() {
    let redis = start();
    let cache = redis.cache("inv");
    let db = Db::default();
    db.set(1, 10);
    db.set(2, 20);
    assert_eq!(price(&cache, &db, 1).await, 10);
    assert_eq!(price(&cache, &db, 2).await, 20);
    let before = redis.keys().await;
    assert_eq!(before.len(), 2);

    db.set(1, 11);
    assert_eq!(price(&cache, &db, 1).await, 10, "still cached");
    assert_eq!(price_invalidate(&cache, 1).await, Ok(true));
    assert_eq!(
        price_invalidate(&cache, 1).await,
        Ok(false),
        "already gone"
    );
    let after = redis.entries().await;
    assert_eq!(after.len(), 1, "only id 1's entry went: {after:?}");
    assert!(before.contains(&after[0]));

    let reads = db.reads.load(SeqCst);
    assert_eq!(price(&cache, &db, 1).await, 11, "recomputed");
    assert_eq!(price(&cache, &db, 2).await, 20, "untouched");
    assert_eq!(db.reads.load(SeqCst), reads + 1);
}

#[tokio::test]
async fn refresh_recomputes_and_stores_without_reading_the_cache() {
    let redis = start();
    let cache = redis.cache("refresh");
    let db = Db::default();
    db.set(5, 50);
    assert_eq!(price(&cache, &db, 5).await, 50);
    db.set(5, 51);
    assert_eq!(price_refresh(&cache, &db, 5).await, 51);
    let reads = db.reads.load(SeqCst);
    assert_eq!(
        price(&cache, &db, 5).await,
        51,
        "served the refreshed entry"
    );
    assert_eq!(db.reads.load(SeqCst), reads, "from the cache");
    assert_eq!(redis.keys().await.len(), 1);
}

#[tokio::test]
async fn companions_of_a_disabled_cache_report_it_and_refresh_still_computes() {
    let cache = Cache::disabled();
    let db = Db::default();
    db.set(1, 7);
    assert_eq!(
        price_invalidate(&cache, 1).await,
        Err(CacheError::Disabled)
    );
    assert_eq!(price_refresh(&cache, &db, 1).await, 7);
}

struct Repo {
    cache: Cache,
    db: Db,
}

impl Repo {
    #[redis_cache(ttl = 300, early_refresh = false, cache = self.cache, name = "inv::Repo::stock")]
    async fn stock(&self, id: u64) -> u64 {
        self.db.get(id)
    }
}

#[tokio::test]
async fn companions_work_for_methods() {
    let redis = start();
    let repo = Repo {
        cache: redis.cache("method"),
        db: Db::default(),
    };
    repo.db.set(3, 30);
    assert_eq!(repo.stock(3).await, 30);
    repo.db.set(3, 31);
    assert_eq!(repo.stock(3).await, 30);
    assert_eq!(repo.stock_invalidate(3).await, Ok(true));
    assert!(redis.entries().await.is_empty());
    assert_eq!(repo.stock(3).await, 31);
    repo.db.set(3, 32);
    assert_eq!(repo.stock_refresh(3).await, 32);
    assert_eq!(repo.stock(3).await, 32);
    let stats = stats_for("inv::Repo::stock").expect("registered");
    assert_eq!(stats.executions, 3);
}

#[redis_cache(ttl = 300, skip(cache), cache = cache, name = "inv::catalog_item")]
async fn catalog_item(cache: &Cache, id: u64) -> u64 {
    id
}

/// The trap for pattern matching: a function whose name extends `catalog_item`'s.
#[redis_cache(ttl = 300, skip(cache), cache = cache, name = "inv::catalog_item::v2")]
async fn catalog_item_v2(cache: &Cache, id: u64) -> u64 {
    id
}

#[tokio::test]
async fn clearing_a_function_removes_its_keys_and_only_them_among_100_000_others() {
    let redis = start();
    let cache = redis.cache("clear");
    for id in 0..500 {
        catalog_item(&cache, id).await;
    }
    for id in 0..50 {
        catalog_item_v2(&cache, id).await;
    }
    // 100,000 keys of other functions, other prefixes and other applications.
    let keys = (0..100_000u64).map(|n| match n % 4 {
        0 => format!("clear:inv::other:0123abcd:{{{n:032x}}}"),
        1 => format!("clear:inv::catalog_items:0123abcd:{{{n:032x}}}"),
        2 => format!("other-app:inv::catalog_item:0123abcd:{{{n:032x}}}"),
        _ => format!("session:{n}"),
    });
    fill(&redis, keys.map(|key| redis.prefix(&key)).collect()).await;
    let total = || async { redis.keys().await.len() };
    assert_eq!(total().await, 100_550);

    let removed = cache.clear_function("inv::catalog_item").await.unwrap();
    assert_eq!(removed, 500);
    assert_eq!(total().await, 100_050);
    let mut left = redis.keys_matching("clear:inv::catalog_item:*").await;
    left.retain(|k| !k.contains("catalog_item::v2"));
    assert!(left.is_empty(), "{left:?}");

    assert_eq!(cache.clear_prefix("inv::catalog_item::").await, Ok(50));
    assert_eq!(total().await, 100_000);
    assert_eq!(cache.clear().await, Ok(50_000), "both `clear:` families");
    assert_eq!(total().await, 50_000);
}

#[redis_cache(ttl = 300, skip(cache, gate), cache = cache, name = "inv::gated")]
async fn gated(cache: &Cache, gate: &Gate, id: u64) -> u64 {
    gate.wait().await;
    id
}

/// `clear_function` removes the lock of a computation in flight (`…:#{…}:lock`, outside the
/// entries' `…:{…}`), so a computation that began before the clear never stores after it.
#[tokio::test]
async fn clearing_a_function_fences_off_a_computation_in_flight() {
    let redis = start();
    let cache = redis.cache("clear-fence");
    let gate = Gate::new();
    let call = gated(&cache, &gate, 7);
    tokio::pin!(call);
    // The body runs under the lock: once it started, the lock is in Redis.
    tokio::select! {
        _ = &mut call => panic!("the body cannot finish before the gate opens"),
        () = gate.until_arrived(1) => {}
    }
    let keys = redis.keys().await;
    assert!(keys.len() == 1 && keys[0].ends_with("}:lock"), "{keys:?}");
    assert_eq!(cache.clear_function("inv::gated").await, Ok(1));
    assert_eq!(redis.keys().await, Vec::<String>::new(), "the lock survived");
    gate.open();
    assert_eq!(call.await, 7);
    cache.flush().await;
    assert_eq!(
        redis.keys().await,
        Vec::<String>::new(),
        "a value computed before the clear was stored after it"
    );
    assert_eq!(stats_for("inv::gated").unwrap().fenced, 1);
}

/// Sets each of `keys` (to 1): pipelined on one server; on a cluster, whose keys live on several
/// nodes, from concurrent tasks.
async fn fill(redis: &Deployment, keys: Vec<String>) {
    match redis.connection().await {
        AnyConnection::Single(mut conn) => {
            for batch in keys.chunks(1000) {
                let mut pipe = redis::pipe();
                for key in batch {
                    pipe.set(key, 1).ignore();
                }
                let () = pipe.query_async(&mut conn).await.unwrap();
            }
        }
        AnyConnection::Cluster(conn) => {
            let mut tasks = tokio::task::JoinSet::new();
            for batch in keys.chunks(keys.len().div_ceil(64).max(1)) {
                let (mut conn, batch) = (conn.clone(), batch.to_vec());
                tasks.spawn(async move {
                    for key in batch {
                        let () = redis::cmd("SET")
                            .arg(key)
                            .arg(1)
                            .query_async(&mut conn)
                            .await
                            .unwrap();
                    }
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.unwrap();
            }
        }
    }
}

#[tokio::test]
async fn clear_rejects_names_that_could_escape_the_prefix() {
    let redis = start();
    let cache = redis.cache("escape");
    let not_ours = redis.prefix("escape-not-ours");
    redis
        .command::<()>(&["SET", &not_ours, "1"])
        .await
        .unwrap();
    for bad in ["*", "a*", "x?", "[a-z]", "a b", "", "\\*"] {
        assert!(
            matches!(
                cache.clear_prefix(bad).await,
                Err(CacheError::InvalidName(_))
            ),
            "{bad:?}"
        );
        assert!(
            matches!(
                cache.clear_function(bad).await,
                Err(CacheError::InvalidName(_))
            ),
            "{bad:?}"
        );
    }
    assert_eq!(redis.keys().await, vec![not_ours]);
}

/// Gives the scheduler a random number of chances to interleave other tasks here.
async fn yield_randomly() {
    for _ in 0..fastrand::usize(0..4) {
        tokio::task::yield_now().await;
    }
}

#[redis_cache(ttl = 300, early_refresh = false, skip(cache, db), cache = cache, name = "inv::balance")]
async fn balance(cache: &Cache, db: &Db, id: u64) -> u64 {
    yield_randomly().await;
    let value = db.get(id);
    yield_randomly().await;
    value
}

/// One race, `iterations` times: four readers (on two caches: two connections and two
/// in-process flight tables, as two processes would) call `read` for a fresh id while `write`
/// changes the row to 2 and invalidates; then `read` on each cache must give 2. Returns the
/// stale reads.
async fn race<R, RF, W, WF>(prefix: &str, iterations: u64, read: R, write: W) -> Vec<(u64, u64)>
where
    R: Fn(Cache, Arc<Db>, u64) -> RF + Clone + Send + 'static,
    RF: Future<Output = u64> + Send,
    W: Fn(Cache, Arc<Db>, u64) -> WF + Clone + Send + 'static,
    WF: Future<Output = ()> + Send,
{
    let redis = start();
    let caches = [redis.cache(prefix), redis.cache(prefix)];
    let db = Arc::new(Db::default());
    let mut stale = Vec::new();
    for id in 0..iterations {
        db.set(id, 1);
        let mut tasks = Vec::new();
        for reader in 0..4 {
            let (cache, db, read) = (caches[reader % 2].clone(), db.clone(), read.clone());
            tasks.push(tokio::spawn(async move {
                read(cache, db, id).await;
            }));
        }
        let (cache, db_w, write) = (caches[(id % 2) as usize].clone(), db.clone(), write.clone());
        tasks.push(tokio::spawn(async move {
            yield_randomly().await;
            db_w.set(id, 2);
            write(cache, db_w, id).await;
        }));
        for task in tasks {
            task.await.unwrap();
        }
        for cache in &caches {
            let seen = read(cache.clone(), db.clone(), id).await;
            if seen != 2 {
                stale.push((id, seen));
            }
        }
    }
    stale
}

fn race_iterations() -> u64 {
    std::env::var("RACE_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000)
}

/// What a race left behind: no stale value, and some computation fenced off (else the race was
/// never exercised).
fn assert_race_held(function: &str, iterations: u64, stale: &[(u64, u64)]) {
    let stats = stats_for(function).expect("registered");
    eprintln!(
        "{iterations} iterations: {} stale, {} writes fenced off, {} executions",
        stale.len(),
        stats.fenced,
        stats.executions
    );
    assert!(stale.is_empty(), "old values written back: {stale:?}");
    assert!(
        stats.fenced > 0,
        "the race was never exercised: no computation was fenced off"
    );
    assert_eq!(stats.errors, 0);
}

/// The race with `_invalidate`, `_refresh` and `clear_function`: whatever the interleaving, once
/// everyone is done the cache must not hold the old value.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalidation_racing_a_computation_is_never_undone() {
    let iterations = race_iterations();
    let read = |cache: Cache, db: Arc<Db>, id| async move { balance(&cache, &db, id).await };
    let write = |cache: Cache, db: Arc<Db>, id: u64| async move {
        match id % 10 {
            0..=4 => drop(balance_invalidate(&cache, id).await.unwrap()),
            5..=8 => assert_eq!(balance_refresh(&cache, &db, id).await, 2),
            _ => drop(cache.clear_function("inv::balance").await.unwrap()),
        }
        // Keep the keyspace small, so the clears stay fast: the entry of the id before goes.
        if id > 0 {
            balance_invalidate(&cache, id - 1).await.unwrap();
        }
    };
    let stale = race("race", iterations, read, write).await;
    assert_race_held("inv::balance", iterations, &stale);
}

#[redis_cache(
    ttl = 300,
    early_refresh = false,
    tags("account:{id}"),
    skip(cache, db),
    cache = cache,
    name = "inv::tagged_balance"
)]
async fn tagged_balance(cache: &Cache, db: &Db, id: u64) -> u64 {
    yield_randomly().await;
    let value = db.get(id);
    yield_randomly().await;
    value
}

/// The same race with `invalidate_tag`: a computation that read the old row before the tag was
/// invalidated never stores afterwards, whether its key joined the tag before the invalidation
/// (the invalidation deletes its lock) or after (the tag's mark fences it off).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tag_invalidation_racing_a_computation_is_never_undone() {
    let iterations = race_iterations();
    let read = |cache: Cache, db: Arc<Db>, id| async move { tagged_balance(&cache, &db, id).await };
    let write = |cache: Cache, _db: Arc<Db>, id: u64| async move {
        cache
            .invalidate_tag(&format!("account:{id}"))
            .await
            .unwrap();
    };
    let stale = race("tag-race", iterations, read, write).await;
    assert_race_held("inv::tagged_balance", iterations, &stale);
}
