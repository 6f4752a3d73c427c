//! The admin router (`admin` feature): what each endpoint answers, and what it refuses.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use redis_cache_tests::RedisServer;
use redis_cached::admin::{BearerToken, InvalidToken};
use redis_cached::{Cache, redis_cache};
use serde_json::Value;
use tower::ServiceExt;

#[redis_cache(ttl = 300, early_refresh = false, skip(cache), cache = cache)]
async fn admin_item(cache: &Cache, id: u64) -> u64 {
    id * 2
}

/// Called by one test only: process-wide counters stay exact.
#[redis_cache(ttl = 300, early_refresh = false, skip(cache), cache = cache)]
async fn admin_counted(cache: &Cache, id: u64) -> u64 {
    id * 3
}

#[redis_cache(ttl = 300, skip(cache), cache = cache)]
async fn admin_other(cache: &Cache, id: u64) -> u64 {
    id
}

#[redis_cache(ttl = 300, tags("item:{id}", "items"), skip(cache), cache = cache)]
async fn admin_tagged(cache: &Cache, id: u64) -> u64 {
    id
}

async fn send(app: &Router, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    (status, json)
}

#[tokio::test]
async fn stats_show_counters_breaker_and_redis_memory() {
    let redis =
        RedisServer::start_with(&["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"]);
    let cache = redis.cache("admin-stats");
    let app: Router = redis_cached::admin::router(cache.clone());
    for _ in 0..3 {
        // The miss returns once its value is stored: the next calls are hits.
        admin_counted(&cache, 1).await;
    }
    let (status, body) = send(&app, Method::GET, "/cache/stats", "").await;
    assert_eq!(status, StatusCode::OK);
    let item = body["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["function"] == "admin::admin_counted")
        .unwrap_or_else(|| panic!("{body:#}"));
    assert_eq!(
        (item["hits"].as_u64(), item["misses"].as_u64()),
        (Some(2), Some(1))
    );
    assert!((item["hit_ratio"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(item["function_latency"]["count"], 1);
    assert_eq!(
        item["redis_latency"]["count"], 5,
        "GET, lock, store, GET, GET"
    );
    assert!(body["total"]["hits"].as_u64().unwrap() >= 2);
    assert_eq!(body["breaker"]["state"], "closed");
    assert_eq!(body["cache"]["prefix"], "admin-stats");
    assert_eq!(body["redis"]["maxmemory"], 64 * 1024 * 1024);
    assert_eq!(body["redis"]["maxmemory_policy"], "allkeys-lru");
    assert!(body["redis"]["used_memory"].as_u64().unwrap() > 0);
    assert!(body["redis"]["evicted_keys"].is_u64());
}

#[tokio::test]
async fn stats_report_redis_down_instead_of_failing() {
    let cache = redis_cache_tests::unreachable_cache("admin-down");
    let app: Router = redis_cached::admin::router(cache);
    let (status, body) = send(&app, Method::GET, "/cache/stats", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["redis"]["error"].is_string(), "{body:#}");
}

#[tokio::test]
async fn invalidate_by_function_and_prefix_and_clear() {
    let redis = RedisServer::start();
    let cache = redis.cache("admin-inv");
    let app: Router = redis_cached::admin::router(cache.clone());
    for id in 0..10 {
        admin_item(&cache, id).await;
        admin_other(&cache, id).await;
    }
    redis
        .command::<()>(&["SET", "not-ours", "1"])
        .await
        .unwrap();

    let body = r#"{"function": "admin::admin_item"}"#;
    let (status, json) = send(&app, Method::POST, "/cache/invalidate", body).await;
    assert_eq!(
        (status, json["removed"].as_u64()),
        (StatusCode::OK, Some(10))
    );
    assert_eq!(redis.keys().await.len(), 11);

    let body = r#"{"prefix": "admin::admin_o"}"#;
    let (status, json) = send(&app, Method::POST, "/cache/invalidate", body).await;
    assert_eq!(
        (status, json["removed"].as_u64()),
        (StatusCode::OK, Some(10))
    );
    assert_eq!(redis.keys().await, vec!["not-ours".to_string()]);

    admin_item(&cache, 1).await;
    let (status, json) = send(&app, Method::POST, "/cache/clear", "").await;
    assert_eq!(
        (status, json["removed"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    let (status, _) = send(&app, Method::POST, "/cache/clear", "{}").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(redis.keys().await, vec!["not-ours".to_string()]);
}

#[tokio::test]
async fn invalidate_by_tag() {
    let redis = RedisServer::start();
    let cache = redis.cache("admin-tag");
    let app: Router = redis_cached::admin::router(cache.clone());
    for id in 0..5 {
        admin_tagged(&cache, id).await;
    }
    let body = r#"{"tag": "item:3"}"#;
    let (status, json) = send(&app, Method::POST, "/cache/invalidate", body).await;
    assert_eq!(
        (status, json["removed"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    let (status, json) = send(
        &app,
        Method::POST,
        "/cache/invalidate",
        r#"{"tag": "items"}"#,
    )
    .await;
    assert_eq!(
        (status, json["removed"].as_u64()),
        (StatusCode::OK, Some(4))
    );
    let entries = redis.keys_but_tags().await;
    assert!(entries.is_empty(), "{entries:?}");
    let (_, stats) = send(&app, Method::GET, "/cache/stats", "").await;
    assert!(stats["tag_invalidations"].as_u64().unwrap() >= 2);
    let both = r#"{"tag": "items", "prefix": "a"}"#;
    let (status, _) = send(&app, Method::POST, "/cache/invalidate", both).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bad_requests_are_refused_and_change_nothing() {
    let redis = RedisServer::start();
    let cache = redis.cache("admin-bad");
    let app: Router = redis_cached::admin::router(cache.clone());
    admin_item(&cache, 1).await;
    let cases = [
        (
            "/cache/invalidate",
            r#"{"function": "admin::nope"}"#,
            StatusCode::NOT_FOUND,
        ),
        (
            "/cache/invalidate",
            r#"{"prefix": "*"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/cache/invalidate",
            r#"{"prefix": "a b"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/cache/invalidate",
            r#"{"prefix": ""}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/cache/invalidate",
            r#"{"function": "admin::admin_item", "prefix": "a"}"#,
            StatusCode::BAD_REQUEST,
        ),
        ("/cache/invalidate", r#"{}"#, StatusCode::BAD_REQUEST),
        (
            "/cache/invalidate",
            r#"{"pattern": "*"}"#,
            StatusCode::BAD_REQUEST,
        ),
        ("/cache/invalidate", "not json", StatusCode::BAD_REQUEST),
        (
            "/cache/clear",
            r#"{"function": "admin::admin_item"}"#,
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (path, body, want) in cases {
        let (status, json) = send(&app, Method::POST, path, body).await;
        assert_eq!(status, want, "{path} {body}: {json}");
        assert!(json["error"].is_string(), "{json}");
    }
    assert_eq!(redis.keys().await.len(), 1, "nothing was removed");
    let (status, json) = send(
        &app,
        Method::POST,
        "/cache/invalidate",
        r#"{"function": "admin::nope"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let said = json["error"].as_str().unwrap();
    assert!(said.contains("admin::nope"), "{said}");
    // The functions this process has called are not listed to whoever asks.
    assert!(!said.contains("admin::admin_item"), "{said}");
}

#[tokio::test]
async fn writes_answer_503_when_redis_is_unreachable() {
    let cache = redis_cache_tests::unreachable_cache("admin-503");
    let app: Router = redis_cached::admin::router(cache);
    let (status, json) = send(&app, Method::POST, "/cache/clear", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{json}");
}

#[tokio::test]
async fn with_a_token_only_requests_presenting_it_get_through() {
    let redis = RedisServer::start();
    let cache = redis.cache("admin-token");
    let token = BearerToken::new("0123456789abcdef").unwrap();
    let app: Router = redis_cached::admin::router_with_token(cache.clone(), token);
    admin_item(&cache, 1).await;
    let request = |auth: Option<&str>| {
        let mut request = Request::builder().method(Method::POST).uri("/cache/clear");
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.body(Body::empty()).unwrap()
    };
    for refused in [
        None,
        Some("Bearer "),
        Some("Bearer 0123456789abcde"),
        Some("Bearer 0123456789abcdef0"),
        Some("Basic 0123456789abcdef"),
    ] {
        let response = app.clone().oneshot(request(refused)).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{refused:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
    assert_eq!(redis.keys().await.len(), 1, "nothing was removed");
    let admitted = request(Some("Bearer 0123456789abcdef"));
    let response = app.clone().oneshot(admitted).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(redis.keys().await.is_empty());
    assert_eq!(BearerToken::new("").unwrap_err(), InvalidToken::Empty);
}

#[tokio::test]
async fn a_503_says_what_failed_not_what_redis_said() {
    let redis = RedisServer::start();
    let cache = redis.cache("admin-refused");
    let app: Router = redis_cached::admin::router(cache.clone());
    admin_item(&cache, 1).await;
    // Redis refuses the walk: its error names the user and the command.
    redis.cli(&["ACL", "SETUSER", "default", "-scan"]);
    let (status, json) = send(&app, Method::POST, "/cache/clear", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{json}");
    let said = json["error"].as_str().unwrap();
    assert!(said.contains("Redis refused the command"), "{said}");
    for secret in ["NOPERM", "default", "scan"] {
        assert!(!said.contains(secret), "{said}");
    }
}

/// `INFO` commands Redis has run.
fn info_calls(redis: &RedisServer) -> u64 {
    let stats = redis.cli(&["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_info:calls="))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn polling_stats_does_not_send_info_each_time() {
    let redis = RedisServer::start();
    let app: Router = redis_cached::admin::router(redis.cache("admin-poll"));
    let (status, _) = send(&app, Method::GET, "/cache/stats", "").await;
    assert_eq!(status, StatusCode::OK);
    let before = info_calls(&redis);
    for _ in 0..20 {
        let (status, body) = send(&app, Method::GET, "/cache/stats", "").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body["redis"]["used_memory"].is_u64(), "{body:#}");
    }
    // Only the `INFO commandstats` of `before` itself (counted after it ran): the router
    // reused the INFO of the first request.
    assert_eq!(info_calls(&redis) - before, 1);
}

#[tokio::test]
async fn one_clear_runs_at_a_time() {
    let redis = RedisServer::start();
    // Commands wait as long as Redis holds them.
    let cache = redis
        .builder()
        .prefix("admin-busy")
        .command_timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    let app: Router = redis_cached::admin::router(cache.clone());
    admin_item(&cache, 1).await;
    // Redis holds writes: the first clear waits in its UNLINK.
    redis.cli(&["CLIENT", "PAUSE", "600000", "WRITE"]);
    let first = tokio::spawn({
        let app = app.clone();
        async move { send(&app, Method::POST, "/cache/clear", "").await }
    });
    redis_cache_tests::eventually("the first clear is held by Redis", || {
        let clients = redis.cli(&["CLIENT", "LIST"]);
        clients
            .lines()
            .any(|l| l.contains(" flags=b ") && l.contains(" cmd=unlink "))
    })
    .await;
    let (status, json) = send(&app, Method::POST, "/cache/clear", "").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{json}");
    let (status, _) = send(&app, Method::POST, "/cache/invalidate", r#"{"tag": "x"}"#).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    redis.cli(&["CLIENT", "UNPAUSE"]);
    let (status, json) = first.await.unwrap();
    assert_eq!(
        (status, json["removed"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    // Done: the next one runs.
    let (status, _) = send(&app, Method::POST, "/cache/clear", "").await;
    assert_eq!(status, StatusCode::OK);
}
