//! The example service starts and serves: over real HTTP on a loopback port, against a Redis and
//! a SQLite database of its own. One test: the service uses the process's default cache.

use std::time::Duration;

use redis_cache_examples::catalog::{self, Db};
use redis_cache_tests::RedisServer;
use redis_cached::Cache;
use redis_cached::admin::BearerToken;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.1 request on its own connection: the status and the body.
async fn http(port: u16, method: &str, path: &str, headers: &[&str], body: &str) -> (u16, String) {
    let (status, _, body) = exchange(port, method, path, headers, body).await;
    (status, body)
}

/// The value of the response header `name` (lowercase) in `head`.
fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// [`http`], with the response's head (status line and headers) too.
async fn exchange(
    port: u16,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    if !body.is_empty() {
        request.push_str("content-type: application/json\r\n");
    }
    request.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (status, head.to_string(), body.to_string())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn executions(function: &str) -> u64 {
    redis_cached::stats_for(function).map_or(0, |s| s.executions)
}

const SUMMARY: &str = "catalog::product_summary";
const SUMMARIES: &str = "catalog::product_summary (batch)";
const TOP: &str = "redis_cache_examples::catalog::top_products";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_starts_and_serves() {
    let redis = RedisServer::start();
    let cache: Cache = redis.cache("catalog-example");
    redis_cached::set_default(cache.clone()).unwrap();
    let token = BearerToken::new("secret").unwrap();
    let app = catalog::router(Db::seeded(), cache, Some(token));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // Read: a miss, then a hit, each saying so (`_with_outcome`); the hit with its age.
    let (status, head, first) = exchange(port, "GET", "/products/1", &[], "").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(header(&head, "x-cache"), Some("MISS"), "{head}");
    assert_eq!(
        header(&head, "age"),
        None,
        "a computed page has no age: {head}"
    );
    let (_, head, second) = exchange(port, "GET", "/products/1", &[], "").await;
    // From Redis, or from this replica's copy (the local tier).
    assert!(
        matches!(header(&head, "x-cache"), Some("HIT" | "LOCAL-HIT")),
        "{head}"
    );
    let age: u64 = header(&head, "age").expect("an age").parse().unwrap();
    assert!(age < 300, "younger than its TTL: {head}");
    assert_eq!(first, second);
    assert_eq!(executions(SUMMARY), 1);
    // The hot path keeps its pages in the process: a later read is answered by the local tier.
    let mut answered = Vec::new();
    for _ in 0..100 {
        let (_, head, _) = exchange(port, "GET", "/products/1", &[], "").await;
        answered.push(header(&head, "x-cache").unwrap_or_default().to_string());
        if answered.last().is_some_and(|a| a == "LOCAL-HIT") {
            break;
        }
    }
    assert_eq!(
        answered.last().map(String::as_str),
        Some("LOCAL-HIT"),
        "{answered:?}"
    );
    assert_eq!(executions(SUMMARY), 1);
    let page = json(&first);
    assert_eq!(page["id"], 1);

    // A review invalidates: the next read recomputes and counts it.
    let (status, _) = http(port, "POST", "/products/1/reviews", &[], r#"{"stars": 5}"#).await;
    assert_eq!(status, 201);
    let (_, after_review) = http(port, "GET", "/products/1", &[], "").await;
    assert_eq!(
        json(&after_review)["reviews"].as_u64(),
        Some(page["reviews"].as_u64().unwrap() + 1)
    );
    assert_eq!(executions(SUMMARY), 2);

    // A price change writes through: the next read is a hit with the new price.
    let (status, updated) = http(
        port,
        "PUT",
        "/products/1/price",
        &[],
        r#"{"price_cents": 4321}"#,
    )
    .await;
    assert_eq!(
        (status, json(&updated)["price_cents"].as_u64()),
        (200, Some(4321))
    );
    assert_eq!(executions(SUMMARY), 3);
    // The page the write recomputed is then served from the cache. (On a loaded machine its
    // store may be dropped instead: it began right after the tag's invalidation, within the
    // round-trip margin of the fence, which errs toward dropping; the next read stores it.)
    let (_, read) = http(port, "GET", "/products/1", &[], "").await;
    assert_eq!(json(&read)["price_cents"], 4321);
    let (_, read) = http(port, "GET", "/products/1", &[], "").await;
    assert_eq!(json(&read)["price_cents"], 4321);
    assert!(
        (3..=4).contains(&executions(SUMMARY)),
        "served from the cache: {} executions",
        executions(SUMMARY)
    );

    let (status, _) = http(port, "GET", "/products/999999", &[], "").await;
    assert_eq!(status, 404);

    // The list endpoint shares the pages: 1 is cached (by `product_summary`), 2 and 3 are
    // loaded with one call of the batch function, 999999 does not exist.
    let list = |ids: &'static str| async move {
        let (status, body) = http(port, "GET", &format!("/products?ids={ids}"), &[], "").await;
        assert_eq!(status, 200, "{body}");
        json(&body)
    };
    let pages = list("1,2,3,999999").await;
    let listed: Vec<u64> = pages
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, [1, 2, 3]);
    assert_eq!(
        pages[0]["price_cents"], 4321,
        "the page product_summary cached"
    );
    assert_eq!(executions(SUMMARIES), 1);
    // 2 and 3 are now hits for the single-page function too.
    let before = executions(SUMMARY);
    assert_eq!(
        json(&http(port, "GET", "/products/3", &[], "").await.1)["id"],
        3
    );
    assert_eq!(executions(SUMMARY), before);
    // A price change of 2 invalidates exactly its page, in both: the list recomputes 2 alone
    // (and 999999, which is not stored), the single function recomputes nothing else.
    let (status, _) = http(
        port,
        "PUT",
        "/products/2/price",
        &[],
        r#"{"price_cents": 777}"#,
    )
    .await;
    assert_eq!(status, 200);
    // Served from Redis or from the local tier.
    let hits = |function| redis_cached::stats_for(function).map_or(0, |s| s.hits + s.local_hits);
    let list_hits = hits(SUMMARIES);
    let pages = list("1,2,3").await;
    assert_eq!(pages[1]["price_cents"], 777);
    // 1 and 3 were hits; 2 too, unless the write's own read of it was not stored (see above).
    assert!(hits(SUMMARIES) - list_hits >= 2);
    assert!((1..=2).contains(&executions(SUMMARIES)));
    let before = executions(SUMMARY);
    for id in [1, 3] {
        http(port, "GET", &format!("/products/{id}"), &[], "").await;
    }
    assert_eq!(executions(SUMMARY), before, "1 and 3 were not invalidated");
    assert_eq!(
        json(&http(port, "GET", "/products/2", &[], "").await.1)["price_cents"],
        777
    );
    let (status, _) = http(port, "GET", "/products?ids=a,b", &[], "").await;
    assert_eq!(status, 400);
    let (status, top) = http(port, "GET", "/products/top", &[], "").await;
    assert_eq!(
        (status, json(&top).as_array().map(Vec::len)),
        (200, Some(10))
    );
    // The top list is tagged with its products: a review of one of them invalidates it, a
    // review of a product outside it does not.
    let listed = json(&top)[0][0].as_u64().unwrap();
    let unlisted = (1..=catalog::PRODUCTS)
        .find(|id| !json(&top).as_array().unwrap().iter().any(|e| e[0] == *id))
        .unwrap();
    let top_runs = executions(TOP);
    let review = |id: u64| async move {
        let path = format!("/products/{id}/reviews");
        http(port, "POST", &path, &[], r#"{"stars": 1}"#).await
    };
    assert_eq!(review(unlisted).await.0, 201);
    http(port, "GET", "/products/top", &[], "").await;
    assert_eq!(executions(TOP), top_runs, "still cached");
    assert_eq!(review(listed).await.0, 201);
    http(port, "GET", "/products/top", &[], "").await;
    assert_eq!(executions(TOP), top_runs + 1, "recomputed");

    // Admin: behind the token.
    let (status, _) = http(port, "GET", "/admin/cache/stats", &[], "").await;
    assert_eq!(status, 401);
    let auth = "authorization: Bearer secret";
    let (status, stats) = http(port, "GET", "/admin/cache/stats", &[auth], "").await;
    assert_eq!(status, 200);
    let stats = json(&stats);
    assert_eq!(stats["breaker"]["state"], "closed");
    assert!(stats["total"]["hits"].as_u64().unwrap() >= 2, "{stats:#}");
    let (status, cleared) = http(port, "POST", "/admin/cache/clear", &[auth], "").await;
    assert_eq!(status, 200);
    assert!(json(&cleared)["removed"].as_u64().unwrap() >= 2);
    assert!(redis.keys().await.is_empty());

    // A short load through the router: every request succeeds.
    let app = catalog::router(Db::seeded(), redis.cache("catalog-example"), None);
    // Without a token, no admin router: there is no built-in token to guess.
    let request = axum::http::Request::get("/admin/cache/stats")
        .header("authorization", "Bearer dev-token")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(app.clone(), request)
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(catalog::load(app, 8, Duration::from_millis(300)).await > 0);
}
