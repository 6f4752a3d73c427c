use redis_cached::redis_cache;

struct Db;

#[redis_cache(ttl = 60, key = id, skip(db))]
async fn product(db: &Db, id: u64) -> u64 {
    let _ = db;
    id
}

struct Repo {
    tenant: u32,
}

impl Repo {
    #[redis_cache(ttl = 60, key = id, include_self)]
    async fn item(&self, id: u64) -> u64 {
        id + u64::from(self.tenant)
    }
}

fn main() {}
