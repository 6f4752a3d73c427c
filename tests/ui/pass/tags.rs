#![deny(warnings)]

use redis_cached::redis_cache;

#[derive(serde::Serialize)]
pub struct Query {
    pub user: u64,
    pub page: (u32, u32),
}

#[redis_cache(ttl = 60, tags("product:{id}", "catalog", "locale:{locale}"))]
async fn product(id: u64, locale: String) -> String {
    format!("{id}{locale}")
}

#[redis_cache(ttl = 60, tags("user:{query.user}", "page:{query.page.0}"))]
async fn listing(query: Query) -> Vec<u64> {
    vec![query.user]
}

#[redis_cache(
    ttl = 60,
    tags("search"),
    tags = |ids: &Vec<u64>| ids.iter().map(|id| format!("product:{id}"))
)]
async fn search(text: String) -> Result<Vec<u64>, String> {
    if text.is_empty() {
        return Err("empty".into());
    }
    let n: u64 = text.len().try_into().map_err(|_| "long".to_string())?;
    Ok(vec![n])
}

#[derive(Clone)]
struct Shop {
    tenant: u64,
}

impl Shop {
    #[redis_cache(ttl = 60, tags("tenant:{self.tenant}"), refresh = "background")]
    async fn orders(&self, day: u32) -> u64 {
        self.tenant + u64::from(day)
    }
}

/// `return` in the closure returns the tags.
#[redis_cache(
    ttl = 60,
    tags = |ids: &Vec<u64>| {
        if ids.is_empty() {
            return vec!["empty".to_string()];
        }
        ids.iter().map(|id| format!("product:{id}")).collect::<Vec<_>>()
    }
)]
async fn page(text: String) -> Vec<u64> {
    vec![text.len() as u64]
}

fn main() {
    let _ = page("x".into());
    let _ = product(1, "en".into());
    let _ = listing(Query {
        user: 1,
        page: (0, 10),
    });
    let _ = search("lamp".into());
    let _ = Shop { tenant: 1 }.orders(3);
}
