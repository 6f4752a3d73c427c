// ACL: a user granted exactly `redis_cached::ACL_COMMANDS` (after `-@all`), with the cache's
// keys and channels, runs every feature, and Redis refuses it nothing (its `ACL LOG` stays
// empty of this user). A command the cache sends that the list lacks fails this suite.

use std::collections::HashMap;
use std::time::Duration;

use redis_cached::{ACL_COMMANDS, Cache, redis_cache};
use redis_cache_tests::Gate;

const PASSWORD: &str = "acl-Pa55word";

#[redis_cache(ttl = 300, skip(cache), cache = cache)]
async fn acl_plain(cache: &Cache, id: u64) -> u64 {
    id + 1
}

#[redis_cache(ttl = 300, tags("acl:{id}", "acl-all"), skip(cache), cache = cache)]
async fn acl_tagged(cache: &Cache, id: u64) -> u64 {
    id + 2
}

#[redis_cache(ttl = 300, batch = ids, skip(cache), cache = cache)]
async fn acl_batch(cache: &Cache, ids: Vec<u64>) -> HashMap<u64, u64> {
    ids.into_iter().map(|id| (id, id + 3)).collect()
}

#[redis_cache(ttl = 300, local = 100, skip(cache), cache = cache)]
async fn acl_local(cache: &Cache, id: u64) -> u64 {
    id + 4
}

static HELD: Gate = Gate::new();

#[redis_cache(ttl = 300, skip(cache), cache = cache)]
async fn acl_held(cache: &Cache, id: u64) -> u64 {
    HELD.wait().await;
    id + 5
}

fn name(function: &str) -> String {
    format!("{}::{function}", module_path!())
}

/// The `ACL LOG` lines of every server that name `user`: its refusals.
fn refusals_of(redis: &redis_cache_tests::deployment::Deployment, user: &str) -> Vec<String> {
    redis
        .every_server()
        .iter()
        .map(|server| server.cli(&["ACL", "LOG"]))
        .filter(|log| log.lines().any(|line| line.trim() == user))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_granted_exactly_the_documented_commands_runs_every_feature() {
    let redis = start();
    let prefix = redis.prefix("acl");
    let user = format!("{prefix}-user");
    for server in redis.every_server() {
        let mut rules = vec![
            "ACL".to_string(),
            "SETUSER".into(),
            user.clone(),
            "on".into(),
            format!(">{PASSWORD}"),
            "resetkeys".into(),
            format!("~{prefix}:*"),
            "resetchannels".into(),
            format!("&{prefix}:*"),
            "-@all".into(),
        ];
        rules.extend(ACL_COMMANDS.split_whitespace().map(str::to_string));
        let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
        assert_eq!(server.cli(&rules).trim(), "OK");
        // Redis 7.2 and later: redis-rs names itself on connect (refused, it would show in the
        // log); Redis 7.0 does not know the command (an error reply here).
        server.cli(&["ACL", "SETUSER", &user, "+client|setinfo"]);
    }
    let builder = || {
        redis
            .builder()
            .prefix(&prefix)
            .credentials(Some(&user), PASSWORD)
            .lock_wait(Duration::from_secs(60))
    };
    let cache = builder().build().unwrap();

    // The user really is limited: a key outside the prefix is refused.
    let node = redis.every_server()[0];
    let mut raw = redis::Client::open(format!("redis://{user}:{PASSWORD}@127.0.0.1:{}", node.port()))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let refused: redis::RedisResult<Option<String>> = redis::cmd("GET")
        .arg("other:key")
        .query_async(&mut raw)
        .await;
    assert_eq!(refused.unwrap_err().code(), Some("NOPERM"));
    assert_eq!(refusals_of(&redis, &user).len(), 1, "the log shows it");
    node.cli(&["ACL", "LOG", "RESET"]);

    // Reads, locks and stores; a hit.
    assert_eq!(acl_plain(&cache, 1).await, 2);
    assert_eq!(acl_plain(&cache, 1).await, 2);
    let plain = redis_cached::stats_for(&name("acl_plain")).unwrap();
    assert_eq!((plain.misses, plain.hits, plain.writes), (1, 1, 1));
    assert!(acl_plain_invalidate(&cache, 1).await.unwrap());

    // Tags: stored with their sets, invalidated in pages.
    for id in 0..3 {
        assert_eq!(acl_tagged(&cache, id).await, id + 2);
    }
    cache.flush().await;
    assert_eq!(cache.invalidate_tag("acl:1").await, Ok(1));
    assert_eq!(cache.invalidate_tag("acl-all").await, Ok(2));

    // A batch: one read of many keys, then the misses' locks and stores.
    let ids = vec![1, 2, 3, 4];
    let first = acl_batch(&cache, ids.clone()).await;
    assert_eq!(acl_batch(&cache, ids).await, first);

    // Waiting for another process's value: a second cache finds the lock held and subscribes.
    let holder = tokio::spawn({
        let cache = cache.clone();
        async move { acl_held(&cache, 9).await }
    });
    HELD.until_arrived(1).await;
    let other = builder().build().unwrap();
    let follower = tokio::spawn({
        let other = other.clone();
        async move { acl_held(&other, 9).await }
    });
    let channels = format!("{prefix}:*");
    redis_cache_tests::eventually("the second cache subscribes to the lock", || {
        redis.every_server().iter().any(|server| {
            !server
                .cli(&["PUBSUB", "CHANNELS", &channels])
                .trim()
                .is_empty()
        })
    })
    .await;
    HELD.open();
    assert_eq!((holder.await.unwrap(), follower.await.unwrap()), (14, 14));
    let held = redis_cached::stats_for(&name("acl_held")).unwrap();
    assert_eq!((held.executions, held.hits), (1, 1), "{held:?}");

    // The local tier: its channel (RESP3, tracking) comes up.
    let local = builder().build().unwrap();
    assert_eq!(acl_local(&local, 1).await, 5);
    redis_cache_tests::local::coherent(&local).await;
    let function = name("acl_local");
    let copy = redis_cache_tests::local::local_hit(&function, || acl_local(&local, 1)).await;
    assert_eq!(copy, 5);

    // Health, and clears.
    assert!(cache.health().await.unwrap().used_memory > 0);
    cache.flush().await;
    assert!(cache.clear_function(&name("acl_batch")).await.unwrap() >= 4);
    cache.clear().await.unwrap();
    assert!(redis.keys().await.is_empty(), "{:?}", redis.keys().await);
    for cache in [&cache, &other, &local] {
        assert_eq!(cache.breaker().opened, 0);
    }
    let refusals = refusals_of(&redis, &user);
    assert!(refusals.is_empty(), "Redis refused the cache: {refusals:#?}");
}
