//! A small catalog service: product pages and a top-products list computed with SQL aggregates
//! over SQLite, cached with `#[redis_cache]`, with write endpoints that keep the cache right and
//! the admin router mounted behind a bearer token.
//!
//! | endpoint | what it does |
//! |---|---|
//! | `GET /products/{id}` | `product_summary`: name, price, review count and average (cached); `X-Cache` and `Age` say how the cache answered (`product_summary_with_outcome`) |
//! | `GET /products?ids=1,2,3` | `product_summaries`: the same pages by the list, one round trip for the cached ones and one query for the others (a batch function sharing `product_summary`'s entries) |
//! | `GET /products/top` | `top_products`: the ten best-rated products (cached) |
//! | `PUT /products/{id}/price` | `{"price_cents": N}`: updates the row, invalidates the tag `product:{id}`, returns the new summary |
//! | `POST /products/{id}/reviews` | `{"stars": 1..=5}`: inserts, then invalidates the tag `product:{id}` |
//! | `/admin/cache/...` | `redis_cached::admin::router_with_token`: only with a token, and behind `Authorization: Bearer <token>` |
//!
//! Both cached functions tag their entries with the products they show: `product_summary` its
//! own (`tags("product:{id}")`), `top_products` each product in the list (`tags = |top| ...`).
//! A write invalidates one tag, and every entry showing that product goes, whatever function
//! computed it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use redis_cached::admin::{self, BearerToken};
use redis_cached::{Cache, redis_cache};
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

/// Products seeded at start.
pub const PRODUCTS: u64 = 1_000;
/// Reviews seeded at start, spread over the products.
pub const REVIEWS: u64 = 50_000;

/// The database: one SQLite connection, used from blocking threads.
#[derive(Debug, Clone)]
pub struct Db {
    conn: Arc<Mutex<rusqlite::Connection>>,
}

#[derive(Debug)]
pub enum DbError {
    NotFound,
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for DbError {
    fn from(err: rusqlite::Error) -> Self {
        match err {
            rusqlite::Error::QueryReturnedNoRows => DbError::NotFound,
            other => DbError::Sql(other),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductSummary {
    pub id: u64,
    pub name: String,
    pub price_cents: u64,
    pub reviews: u64,
    pub average_stars: f64,
}

impl Db {
    /// An in-memory database with [`PRODUCTS`] products and [`REVIEWS`] reviews. Reviews have no
    /// index on `product_id`, so each summary scans them: the slow query the cache saves.
    pub fn seeded() -> Db {
        let conn = rusqlite::Connection::open_in_memory().expect("sqlite in memory");
        Db::seed(&conn);
        Db {
            conn: Arc::new(Mutex::new(conn)),
        }
    }

    /// The database in the SQLite file at `path`, seeded as [`Db::seeded`] if it has no tables
    /// yet: replicas of the service that share one database, as deployed replicas would (each
    /// with its own in-memory one, a price changed on one would never show on the other).
    pub fn open(path: &std::path::Path) -> Db {
        let conn = rusqlite::Connection::open(path).expect("sqlite file");
        conn.busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("WAL");
        let seeded: bool = conn
            .query_row(
                "SELECT COUNT(*) > 0 FROM sqlite_master WHERE name = 'products'",
                [],
                |r| r.get(0),
            )
            .expect("schema lookup");
        if !seeded {
            Db::seed(&conn);
        }
        Db {
            conn: Arc::new(Mutex::new(conn)),
        }
    }

    fn seed(conn: &rusqlite::Connection) {
        conn.execute_batch(
            "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL);
             CREATE TABLE reviews (product_id INTEGER NOT NULL, stars INTEGER NOT NULL);",
        )
        .expect("schema");
        let tx = conn.unchecked_transaction().expect("transaction");
        {
            let mut product = tx
                .prepare("INSERT INTO products VALUES (?1, ?2, ?3)")
                .expect("insert product");
            for id in 1..=PRODUCTS {
                product
                    .execute((id, format!("Product {id}"), 100 + id * 7 % 9_000))
                    .expect("product row");
            }
            let mut review = tx
                .prepare("INSERT INTO reviews VALUES (?1, ?2)")
                .expect("insert review");
            let mut rng = fastrand::Rng::with_seed(7);
            for _ in 0..REVIEWS {
                review
                    .execute((rng.u64(1..=PRODUCTS), rng.u8(1..=5)))
                    .expect("review row");
            }
        }
        tx.commit().expect("commit");
    }

    /// Runs `query` on a blocking thread.
    async fn with<T: Send + 'static>(
        &self,
        query: impl FnOnce(&rusqlite::Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || query(&conn.lock().unwrap_or_else(|p| p.into_inner())))
            .await
            .expect("query thread")
    }

    pub async fn set_price(&self, id: u64, price_cents: u64) -> Result<(), DbError> {
        self.with(move |c| {
            match c.execute(
                "UPDATE products SET price_cents = ?1 WHERE id = ?2",
                (price_cents, id),
            )? {
                0 => Err(DbError::NotFound),
                _ => Ok(()),
            }
        })
        .await
    }

    pub async fn add_review(&self, id: u64, stars: u8) -> Result<(), DbError> {
        self.with(move |c| {
            c.execute("INSERT INTO reviews VALUES (?1, ?2)", (id, stars))?;
            Ok(())
        })
        .await
    }
}

/// A product page: one row and an aggregate over its reviews. `Err` (not found, SQL error) is
/// never cached. Named, so that [`product_summaries`] shares its entries.
///
/// The hot read path, so its pages are also kept in the process (the local tier): a local hit
/// costs no round trip, and the service keeps serving its hot pages through a Redis outage.
/// `local = 1_000`: the whole catalog (`PRODUCTS`), about 100 KB of pages, so no hot page is
/// evicted by a cold one. `local_ttl = 10`: copies are kept coherent by Redis's invalidation
/// messages (a price change on another replica reaches this one in milliseconds); the bound
/// only matters when that channel is down (a Redis outage), where a copy is served at most
/// 10 s past Redis's last confirmation: an outage shorter than that recomputes no page a
/// replica holds.
#[redis_cache(
    ttl = 300,
    stale = 60,
    local = 1_000,
    local_ttl = 10,
    tags("product:{id}"),
    skip(db),
    name = "catalog::product_summary"
)]
pub async fn product_summary(db: &Db, id: u64) -> Result<ProductSummary, DbError> {
    db.with(move |c| {
        let (name, price_cents) = c.query_row(
            "SELECT name, price_cents FROM products WHERE id = ?1",
            [id],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)),
        )?;
        let (reviews, average_stars) = c.query_row(
            "SELECT COUNT(*), COALESCE(AVG(stars), 0.0) FROM reviews WHERE product_id = ?1",
            [id],
            |r| Ok((r.get::<_, u64>(0)?, r.get::<_, f64>(1)?)),
        )?;
        Ok(ProductSummary {
            id,
            name,
            price_cents,
            reviews,
            average_stars,
        })
    })
    .await
}

/// Product pages by the list (`GET /products?ids=...`): a batch function (`batch = ids`). The
/// pages already cached come in one round trip; the others are loaded with one query each for
/// the rows and the review aggregates (`WHERE id IN (...)`), however many they are, and stored
/// one entry per product. It shares its entries with [`product_summary`]: the same `name`, the
/// same tags (the batch's `{ids}` is the product of each entry), the element as the key, and
/// `Result<HashMap<u64, ProductSummary>, _>` for `Result<ProductSummary, _>`. So a page read by
/// either is a hit for the other, and a product's `product:{id}` invalidation removes its page
/// for both. A product absent from the map does not exist: it is left out of the answer.
#[redis_cache(
    ttl = 300,
    stale = 60,
    local = 1_000,
    local_ttl = 10,
    tags("product:{ids}"),
    batch = ids,
    skip(db),
    name = "catalog::product_summary"
)]
pub async fn product_summaries(
    db: &Db,
    ids: Vec<u64>,
) -> Result<HashMap<u64, ProductSummary>, DbError> {
    db.with(move |c| {
        let marks = vec!["?"; ids.len()].join(",");
        let mut rows = c.prepare(&format!(
            "SELECT id, name, price_cents FROM products WHERE id IN ({marks})"
        ))?;
        let mut pages: HashMap<u64, ProductSummary> = rows
            .query_map(rusqlite::params_from_iter(&ids), |r| {
                Ok(ProductSummary {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    price_cents: r.get(2)?,
                    reviews: 0,
                    average_stars: 0.0,
                })
            })?
            .map(|page| page.map(|page| (page.id, page)))
            .collect::<Result<_, _>>()?;
        let mut reviews = c.prepare(&format!(
            "SELECT product_id, COUNT(*), AVG(stars) FROM reviews WHERE product_id IN ({marks})
             GROUP BY product_id"
        ))?;
        let counts = reviews.query_map(rusqlite::params_from_iter(&ids), |r| {
            Ok((
                r.get::<_, u64>(0)?,
                r.get::<_, u64>(1)?,
                r.get::<_, f64>(2)?,
            ))
        })?;
        for count in counts {
            let (id, reviews, average_stars) = count?;
            if let Some(page) = pages.get_mut(&id) {
                page.reviews = reviews;
                page.average_stars = average_stars;
            }
        }
        Ok(pages)
    })
    .await
}

/// The most products one list request may name.
pub const MAX_LIST: usize = 500;

/// The ten best-rated products: an aggregate over every review. Tagged with each product it
/// lists, so a review or a price change of one of them invalidates it; a review that would lift
/// another product into the list shows within the TTL (invalidating on every review would keep
/// it from ever being stored at the example's write rate).
#[redis_cache(
    ttl = 30,
    tags = |top: &Vec<(u64, f64)>| top.iter().map(|(id, _)| format!("product:{id}")),
    skip(db)
)]
pub async fn top_products(db: &Db) -> Result<Vec<(u64, f64)>, DbError> {
    db.with(|c| {
        let mut top = c.prepare(
            "SELECT product_id, AVG(stars) AS avg FROM reviews GROUP BY product_id
             ORDER BY avg DESC, product_id LIMIT 10",
        )?;
        let rows = top.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    })
    .await
}

#[derive(Clone)]
struct App {
    db: Db,
    cache: Cache,
}

impl App {
    /// Every cached entry that shows product `id`.
    async fn product_changed(&self, id: u64) {
        if let Err(err) = self.cache.invalidate_tag(&format!("product:{id}")).await {
            // Redis is unreachable: the entries expire with their TTL.
            eprintln!(
                "product {id}: could not invalidate its entries ({err}); they expire with their TTL"
            );
        }
    }
}

/// The service: catalog routes, plus the admin router under `/admin` behind `admin_token`
/// (not mounted without one). `cache` is the cache the functions use (the default cache).
pub fn router(db: Db, cache: Cache, admin_token: Option<BearerToken>) -> Router {
    let catalog = Router::new()
        .route("/products", get(products))
        .route("/products/top", get(top))
        .route("/products/{id}", get(product))
        .route("/products/{id}/price", put(set_price))
        .route("/products/{id}/reviews", post(add_review))
        .with_state(App {
            db,
            cache: cache.clone(),
        });
    match admin_token {
        Some(token) => catalog.nest("/admin", admin::router_with_token(cache, token)),
        None => catalog,
    }
}

fn answer<T: Serialize>(result: Result<T, DbError>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(DbError::NotFound) => StatusCode::NOT_FOUND.into_response(),
        Err(DbError::Sql(err)) => {
            (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response()
        }
    }
}

/// `GET /products/{id}`, saying how the cache answered: `X-Cache` (`HIT`, `MISS`, `STALE`,
/// `LOCAL-HIT`, `COALESCED`, `FALLBACK`) and, for a page served from the cache, `Age` (seconds
/// since it was computed, by whichever replica).
async fn product(State(app): State<App>, Path(id): Path<u64>) -> Response {
    let (page, outcome) = product_summary_with_outcome(&app.db, id).await;
    let mut response = answer(page);
    let headers = response.headers_mut();
    let status = outcome.outcome().as_str().to_uppercase();
    if let Ok(value) = header::HeaderValue::from_str(&status) {
        headers.insert("x-cache", value);
    }
    if let Some(age) = outcome.age() {
        headers.insert(header::AGE, header::HeaderValue::from(age.as_secs()));
    }
    response
}

#[derive(Deserialize)]
struct List {
    ids: String,
}

/// `GET /products?ids=1,2,3`: the pages of the products that exist, in the order asked.
async fn products(State(app): State<App>, Query(list): Query<List>) -> Response {
    let ids: Result<Vec<u64>, _> = list.ids.split(',').map(|id| id.trim().parse()).collect();
    let ids = match ids {
        Ok(ids) if !ids.is_empty() && ids.len() <= MAX_LIST => ids,
        _ => {
            let usage = format!("ids: 1 to {MAX_LIST} product ids, comma-separated");
            return (StatusCode::BAD_REQUEST, usage).into_response();
        }
    };
    let pages = product_summaries(&app.db, ids.clone()).await;
    answer(pages.map(|mut pages| {
        ids.iter()
            .filter_map(|id| pages.remove(id))
            .collect::<Vec<_>>()
    }))
}

async fn top(State(app): State<App>) -> Response {
    answer(top_products(&app.db).await)
}

#[derive(Deserialize)]
struct Price {
    price_cents: u64,
}

async fn set_price(
    State(app): State<App>,
    Path(id): Path<u64>,
    Json(body): Json<Price>,
) -> Response {
    if let Err(err) = app.db.set_price(id, body.price_cents).await {
        return answer::<()>(Err(err));
    }
    // Every entry showing the product goes (its page, the top list if it is in it); an older
    // computation racing this one cannot store afterwards. The next read computes the new page.
    app.product_changed(id).await;
    answer(product_summary(&app.db, id).await)
}

#[derive(Deserialize)]
struct Review {
    stars: u8,
}

async fn add_review(
    State(app): State<App>,
    Path(id): Path<u64>,
    Json(body): Json<Review>,
) -> Response {
    if !(1..=5).contains(&body.stars) {
        return (StatusCode::BAD_REQUEST, "stars: 1 to 5").into_response();
    }
    if let Err(err) = app.db.add_review(id, body.stars).await {
        return answer::<()>(Err(err));
    }
    // The next reads recompute the summary (and the top list, if it shows the product).
    app.product_changed(id).await;
    StatusCode::CREATED.into_response()
}

/// Sends `requests` through `app` in-process from `tasks` tasks: product pages with a skewed
/// popularity (a few products get most views), the top list, and 2% writes. Prints a line per
/// second with the hit ratio so far.
pub async fn load(app: Router, tasks: usize, duration: Duration) -> u64 {
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..tasks {
        let app = app.clone();
        workers.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(worker as u64);
            let mut sent = 0u64;
            // At least one request per worker, however late the worker first runs.
            loop {
                // Popularity: id ~ PRODUCTS * u^3, so low ids are hot.
                let id = 1 + (PRODUCTS as f64 * rng.f64().powi(3)) as u64;
                let roll = rng.u32(0..100);
                let request = match roll {
                    0 => Request::put(format!("/products/{id}/price"))
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Body::from(format!(
                            r#"{{"price_cents": {}}}"#,
                            rng.u64(100..9_999)
                        ))),
                    1 => Request::post(format!("/products/{id}/reviews"))
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Body::from(format!(r#"{{"stars": {}}}"#, rng.u8(1..=5)))),
                    2..=4 => Request::get("/products/top").body(Body::empty()),
                    _ => Request::get(format!("/products/{id}")).body(Body::empty()),
                };
                let response = app.clone().oneshot(request.expect("request")).await;
                assert!(response.expect("infallible").status().is_success());
                sent += 1;
                if started.elapsed() >= duration {
                    break;
                }
            }
            sent
        }));
    }
    let reporter = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            let total = redis_cached::snapshot().total;
            println!(
                "{:>4.0}s  calls {:>8}  hit ratio {:>5.1}%  executions {:>6}  fallbacks {:>6}",
                started.elapsed().as_secs_f64(),
                total.calls(),
                total.hit_ratio() * 100.0,
                total.executions,
                total.fallbacks
            );
        }
    });
    let mut sent = 0;
    for worker in workers {
        sent += worker.await.expect("load task");
    }
    reporter.abort();
    sent
}
