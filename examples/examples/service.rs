//! The example service: `cargo run --release --example service`.
//!
//! An axum app over SQLite (seeded in memory at start) whose handlers call `#[redis_cache]`
//! functions, with write endpoints that use the invalidation and write-through companions, and
//! the admin router under `/admin` behind the bearer token `ADMIN_TOKEN` (not mounted without
//! one: there is no built-in token).
//!
//! - Redis: `REDIS_URL` (default `redis://127.0.0.1:6379`), or a Redis Cluster by some of its
//!   nodes, `REDIS_CLUSTER_URLS=host:port,host:port`. Without a Redis there, it still serves:
//!   every call runs uncached (fallback), which `/admin/cache/stats` shows.
//! - Listens on `127.0.0.1:$PORT` (default 3000).
//! - `--load SECS`: first sends SECS seconds of traffic through the app (64 tasks), printing the
//!   hit ratio as it climbs, then prints `GET /admin/cache/stats`. `--exit`: stop after that.
//!
//! ```text
//! curl localhost:3000/products/1
//! curl -X PUT localhost:3000/products/1/price -H 'content-type: application/json' -d '{"price_cents": 999}'
//! ADMIN_TOKEN=$(openssl rand -hex 32) cargo run --release --example service &
//! curl -H "authorization: Bearer $ADMIN_TOKEN" localhost:3000/admin/cache/stats
//! ```

use std::time::Duration;

use redis_cache_examples::cli::Cli;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use redis_cache_examples::catalog::{self, Db};
use redis_cached::Cache;
use redis_cached::admin::{self, BearerToken};
use tower::ServiceExt;

const USAGE: &str = "\
The example service: an axum catalog over SQLite whose handlers call #[redis_cache] functions.

usage: cargo run --release --example service [-- OPTIONS]

options:
  --load SECS   first send SECS seconds of traffic through the app (64 tasks), printing the hit
                ratio as it climbs, then print GET /admin/cache/stats
  --exit        stop after --load instead of serving
  -h, --help    print this

environment:
  REDIS_URL     the Redis to use (default redis://127.0.0.1:6379); without one it serves uncached
  REDIS_CLUSTER_URLS
                a Redis Cluster instead, by some of its nodes: host:port,host:port
  PORT          the port to listen on, on 127.0.0.1 (default 3000)
  ADMIN_TOKEN   the bearer token of /admin/cache/...; without it the admin router is not
                mounted
  CATALOG_DB    an SQLite file to use (seeded if new), so that replicas share one database;
                without it, an in-memory database of the process's own
";

#[tokio::main]
async fn main() {
    let cli = Cli::parse("service", USAGE, &[("--load", true), ("--exit", false)]);
    let load_secs: Option<u64> = cli.value("--load");
    let exit = cli.flag("--exit");
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    // No built-in token: a default would be the same on every deployment that forgot to set one.
    let token = match std::env::var("ADMIN_TOKEN") {
        Ok(token) => Some(BearerToken::new(token).unwrap_or_else(|err| {
            eprintln!("ADMIN_TOKEN: {err}");
            std::process::exit(2)
        })),
        Err(_) => None,
    };
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());

    let builder = match std::env::var("REDIS_CLUSTER_URLS") {
        Ok(nodes) => Cache::builder().cluster(nodes.split(',').map(str::trim)),
        Err(_) => Cache::builder().url(&url),
    };
    let cache = builder
        .prefix("catalog-example")
        .build()
        .expect("cache configuration");
    redis_cached::set_default(cache.clone()).expect("first and only default");
    println!(
        "seeding SQLite: {} products, {} reviews",
        catalog::PRODUCTS,
        catalog::REVIEWS
    );
    let db = match std::env::var_os("CATALOG_DB") {
        Some(path) => Db::open(std::path::Path::new(&path)),
        None => Db::seeded(),
    };
    let app = catalog::router(db, cache.clone(), token);

    if let Some(secs) = load_secs {
        // Start from an empty cache, so the climb is visible.
        let _ = cache.clear().await;
        println!("load: 64 tasks for {secs} s against {url}");
        let sent = catalog::load(app.clone(), 64, Duration::from_secs(secs)).await;
        println!("load: {sent} requests");
        // In process, so without the token: what `/admin/cache/stats` answers.
        let stats: Router = admin::router(cache.clone());
        let request = Request::get("/cache/stats")
            .body(Body::empty())
            .expect("request");
        let response = stats.oneshot(request).await.expect("infallible");
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("stats body");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("stats JSON");
        println!(
            "GET /admin/cache/stats\n{}",
            serde_json::to_string_pretty(&json).expect("JSON")
        );
        if exit {
            return;
        }
    }

    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
        .await
        .expect("port free");
    println!("listening on http://127.0.0.1:{port} (Redis: {url})");
    axum::serve(listener, app).await.expect("server");
}
