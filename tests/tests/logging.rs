//! Problems are logged once per change of state, not once per call: a service under load must not
//! drown its logs when Redis misbehaves.

use std::time::Duration;

use redis_cache_tests::RedisServer;
use redis_cache_tests::logs::Capture;
use redis_cached::{BreakerState, Cache, redis_cache};
use tracing::Level;

#[redis_cache(ttl = 60, skip(cache), cache = cache)]
async fn logged(cache: &Cache, id: u64) -> u64 {
    id + 1
}

/// For the breaker's log lines: a frozen Redis opens the breaker within three 50 ms timeouts.
fn quickly_failing_cache(redis: &RedisServer, prefix: &str) -> Cache {
    Cache::builder()
        .url(redis.url())
        .prefix(prefix)
        .command_timeout(Duration::from_millis(50))
        .circuit_breaker(3, Duration::from_millis(50), Duration::from_millis(50))
        .build()
        .unwrap()
}

/// For the logs of Redis's answers: the test settings, whose deadlines no healthy reply misses on
/// a loaded machine, so that no timeout adds a log line or a counter.
fn cache(redis: &RedisServer, prefix: &str) -> Cache {
    redis.builder().prefix(prefix).build().unwrap()
}

#[tokio::test]
async fn the_breaker_logs_each_opening_and_closing_once() {
    let (logs, _guard) = Capture::install();
    let redis = RedisServer::start();
    let cache = quickly_failing_cache(&redis, "breaker");
    assert_eq!(logged(&cache, 0).await, 1);

    redis.pause();
    for id in 1..=300 {
        assert_eq!(logged(&cache, id).await, id + 1);
    }
    assert_eq!(cache.breaker().state, BreakerState::Open);
    redis.resume();
    // Calls until a probe finds Redis answering again (nothing announces it: poll, bounded).
    let probed = async {
        let mut id = 1000;
        while cache.breaker().state == BreakerState::Open {
            assert_eq!(logged(&cache, id).await, id + 1);
            id += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(redis_cache_tests::POLL_BOUND, probed)
        .await
        .expect("a probe closes the breaker once Redis answers");
    assert_eq!(logs.count(Level::WARN, "circuit breaker open"), 1);
    assert_eq!(logs.count(Level::INFO, "circuit breaker closed"), 1);
    assert_eq!((cache.breaker().opened, cache.breaker().closed), (1, 1));
}

#[tokio::test]
async fn refused_writes_are_logged_once_with_the_fix() {
    let (logs, _guard) = Capture::install();
    let redis = RedisServer::start_with(&["--replicaof", "127.0.0.1", "1"]);
    let cache = cache(&redis, "refused");
    for id in 0..200 {
        assert_eq!(logged(&cache, id).await, id + 1);
    }
    assert_eq!(logs.count(Level::WARN, "read-only replica"), 1);
    assert_eq!(
        cache.breaker().state,
        BreakerState::Closed,
        "a refusal is an answer"
    );
    // Promoted: writes work, and a later refusal would be logged again.
    let () = redis.command(&["REPLICAOF", "NO", "ONE"]).await.unwrap();
    logged(&cache, 1_000).await;
    let () = redis
        .command(&["REPLICAOF", "127.0.0.1", "1"])
        .await
        .unwrap();
    logged(&cache, 1_001).await;
    assert_eq!(logs.count(Level::WARN, "read-only replica"), 2);
}

#[redis_cache(ttl = 60, skip(cache), cache = cache)]
async fn report(cache: &Cache, pages: usize) -> Vec<String> {
    (0..pages)
        .map(|i| format!("page {i}: {}", "x".repeat(i % 97)))
        .collect()
}

#[tokio::test]
async fn oversized_values_are_returned_but_not_stored_and_logged_once() {
    let (logs, _guard) = Capture::install();
    let redis = RedisServer::start();
    let cache = redis
        .builder()
        .prefix("oversize")
        .max_value_bytes(16 * 1024)
        .compress_above(usize::MAX)
        .build()
        .unwrap();
    assert_eq!(report(&cache, 10).await.len(), 10);
    for pages in 1000..1010 {
        assert_eq!(report(&cache, pages).await.len(), pages);
    }
    cache.flush().await;
    let stats = redis_cached::stats_for("logging::report").unwrap();
    assert_eq!((stats.writes, stats.oversize), (1, 10));
    assert_eq!(
        redis.keys().await.len(),
        1,
        "only the small value is stored"
    );
    assert_eq!(
        logs.count(Level::WARN, "larger than the cache's max_value_bytes"),
        1
    );

    // Compressed, the same values fit.
    let cache = redis
        .builder()
        .prefix("compressed")
        .max_value_bytes(16 * 1024)
        .build()
        .unwrap();
    assert_eq!(report(&cache, 1000).await.len(), 1000);
    assert_eq!(report(&cache, 1000).await.len(), 1000);
    assert_eq!(
        redis_cached::stats_for("logging::report").unwrap().writes,
        2,
        "stored compressed, then a hit"
    );
}

#[tokio::test]
async fn the_first_connection_reports_memory_and_warns_about_noeviction_once() {
    let (logs, _guard) = Capture::install();
    let full =
        RedisServer::start_with(&["--maxmemory", "10mb", "--maxmemory-policy", "noeviction"]);
    let cache = cache(&full, "health");
    for id in 0..20 {
        logged(&cache, id).await;
    }
    assert_eq!(logs.count(Level::WARN, "maxmemory-policy is noeviction"), 1);
    assert_eq!(logs.count(Level::INFO, "redis_cache: connected"), 1);
    let health = cache.health().await.unwrap();
    assert_eq!(health.maxmemory, 10 * 1024 * 1024);
    assert_eq!(health.maxmemory_policy, "noeviction");
    assert!(health.to_string().contains("of 10.0 MiB"), "{health}");

    let lru =
        RedisServer::start_with(&["--maxmemory", "10mb", "--maxmemory-policy", "allkeys-lru"]);
    let health = lru.builder().build().unwrap().health().await.unwrap();
    assert!(health.warnings().is_empty(), "{:?}", health.warnings());
    assert!(Cache::disabled().health().await.is_err());
}

#[redis_cache(ttl = 60, skip(cache), cache = cache)]
async fn unreadable(cache: &Cache, id: u64) -> u64 {
    id + 1
}

#[tokio::test]
async fn a_problem_on_every_call_is_warned_once_per_interval() {
    let (logs, _guard) = Capture::install();
    let redis = RedisServer::start();
    let cache = cache(&redis, "throttle");
    for id in 0..20 {
        unreadable(&cache, id).await;
    }
    // Garbage in every entry: each call now finds an unreadable one.
    for key in redis.keys().await {
        redis
            .command::<()>(&["SET", &key, "garbage"])
            .await
            .unwrap();
    }
    for id in 0..20 {
        assert_eq!(unreadable(&cache, id).await, id + 1);
    }
    let stats = redis_cached::stats_for("logging::unreadable").unwrap();
    assert_eq!(stats.invalid, 20);
    assert_eq!(logs.count(Level::WARN, "unreadable entry"), 1);
    assert_eq!(logs.count(Level::DEBUG, "unreadable entry"), 19);
    // And one `debug` event per call, whatever its outcome.
    assert_eq!(logs.count(Level::DEBUG, "redis_cache call"), 40);
}

/// Runs `unreachable_default` with `env`, returns its stderr.
fn stderr_of_unreachable_default(env: &[(&str, &str)]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_unreachable_default"))
        .env_remove("REDIS_CACHE_QUIET")
        .envs(env.iter().copied())
        .output()
        .expect("the helper runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stderr).expect("UTF-8")
}

#[test]
fn without_a_subscriber_an_unreachable_redis_is_one_line_on_stderr_naming_it() {
    let port = redis_cache_tests::free_port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}");
    let stderr = stderr_of_unreachable_default(&[("REDIS_URL", &url)]);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line for three calls: {stderr}");
    let expected = format!("redis_cache: cannot reach Redis at redis://:***@127.0.0.1:{port} (");
    assert!(lines[0].starts_with(&expected), "{stderr}");
    assert!(lines[0].contains("Set REDIS_URL"), "{stderr}");
    assert!(lines[0].contains("REDIS_CACHE_QUIET=1"), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "the password is not shown: {stderr}"
    );

    let quiet = stderr_of_unreachable_default(&[("REDIS_URL", &url), ("REDIS_CACHE_QUIET", "1")]);
    assert_eq!(quiet, "", "REDIS_CACHE_QUIET silences it");
}

#[test]
fn a_password_with_at_signs_colons_and_slashes_is_never_shown() {
    let port = redis_cache_tests::free_port();
    // The password is everything up to the last `@`: `s3cr@t:part/x` (its `/` encoded).
    let url = format!("redis://app:s3cr@t:part%2Fx@127.0.0.1:{port}");
    let stderr = stderr_of_unreachable_default(&[("REDIS_URL", &url)]);
    assert!(
        stderr.contains(&format!("redis://app:***@127.0.0.1:{port}")),
        "{stderr}"
    );
    for part in ["s3cr", "t:part", "part", "%2Fx"] {
        assert!(!stderr.contains(part), "{part} shown: {stderr}");
    }
    // The same URL in a cache's `Debug`, its breakers' names and its configuration errors.
    let cache = redis_cached::Cache::builder().url(&url).build().unwrap();
    let breakers = format!("{:?}", cache.breakers());
    let debug = format!("{:?}", redis_cached::Cache::builder().url(&url));
    let error = redis_cached::Cache::builder()
        .url("redis://app:s3cr@t:part%2Fx@127.0.0.1:notaport")
        .build()
        .unwrap_err()
        .to_string();
    for shown in [&breakers, &debug, &error] {
        assert!(
            !shown.contains("s3cr") && !shown.contains("part"),
            "{shown}"
        );
    }
}

/// Runs the `notices` helper with `scenario` and `env`, with or without a `tracing` subscriber;
/// returns its stdout and stderr.
fn notices(scenario: &str, env: &[(&str, &str)], subscriber: bool) -> (String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_notices"));
    command
        .arg(scenario)
        .env_remove("REDIS_CACHE_QUIET")
        .env_remove("NOTICES_SUBSCRIBER")
        .envs(env.iter().copied());
    if subscriber {
        command.env("NOTICES_SUBSCRIBER", "1");
    }
    let output = command.output().expect("the helper runs");
    assert!(output.status.success(), "{output:?}");
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("UTF-8");
    (text(output.stdout), text(output.stderr))
}

/// Each way caching is turned off or bypassed says so: one line on stderr without a subscriber
/// (none with `REDIS_CACHE_QUIET`), one event with one and nothing on stderr.
fn says_once(scenario: &str, env: &[(&str, &str)], line: &str, level: &str, event: &str) {
    let (_, stderr) = notices(scenario, env, false);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{scenario}: one line: {stderr}");
    assert!(lines[0].starts_with("redis_cache: "), "{stderr}");
    assert!(lines[0].contains(line), "{scenario}: {stderr}");
    assert!(lines[0].contains("REDIS_CACHE_QUIET=1"), "{stderr}");

    let mut quiet = env.to_vec();
    quiet.push(("REDIS_CACHE_QUIET", "1"));
    assert_eq!(
        notices(scenario, &quiet, false).1,
        "",
        "{scenario}: silenced"
    );

    let (events, stderr) = notices(scenario, env, true);
    assert_eq!(
        stderr, "",
        "{scenario}: nothing on stderr with a subscriber"
    );
    let said = events
        .lines()
        .filter(|l| l.starts_with(level) && l.contains(event))
        .count();
    assert_eq!(said, 1, "{scenario}: one {level} event: {events}");
}

#[test]
fn an_invalid_configuration_is_said_once_with_or_without_a_subscriber() {
    says_once(
        "invalid-config",
        &[("REDIS_URL", "redis//127.0.0.1:6390")],
        "invalid configuration (",
        "ERROR",
        "invalid configuration, caching is disabled",
    );
}

#[test]
fn a_call_outside_tokio_is_said_once_with_or_without_a_subscriber() {
    let url = format!("redis://127.0.0.1:{}", redis_cache_tests::free_port());
    says_once(
        "no-runtime",
        &[("REDIS_URL", &url)],
        "`notices::double` was called outside a Tokio runtime and ran uncached",
        "WARN",
        "outside a Tokio runtime",
    );
}

#[test]
fn a_server_refusing_client_tracking_is_said_once_with_or_without_a_subscriber() {
    let server = RedisServer::start_with(&["--rename-command", "CLIENT", ""]);
    let url = server.url();
    says_once(
        "tracking-refused",
        &[("REDIS_URL", &url)],
        "Redis refuses client-side caching (",
        "WARN",
        "refuses client-side caching",
    );
}

#[test]
fn a_value_that_does_not_read_back_stops_its_function_storing_and_is_said_once() {
    let server = RedisServer::start();
    let url = server.url();
    let (counts, stderr) = notices("does-not-read-back", &[("REDIS_URL", &url)], false);
    // The first value is checked before it is stored: nothing is written, every call runs the
    // function (the first a miss, the nine others without a lookup).
    assert_eq!(counts.trim(), "writes=0 fallbacks=9 misses=1", "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    for part in [
        "a value of `notices::reading` does not read back into its type (",
        "stores nothing from now on",
        "serialize_with",
        "try_from",
    ] {
        assert!(lines[0].contains(part), "{part}: {stderr}");
    }
    let mut conn = server.client().get_connection().expect("a connection");
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).expect("KEYS");
    assert!(keys.is_empty(), "nothing stored: {keys:?}");

    let (events, stderr) = notices("does-not-read-back", &[("REDIS_URL", &url)], true);
    assert_eq!(stderr, "");
    let errors = events
        .lines()
        .filter(|l| l.starts_with("ERROR") && l.contains("does not read back into its type"))
        .count();
    assert_eq!(errors, 1, "{events}");
}
