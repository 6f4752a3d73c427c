use redis_cached::redis_cache;

/// Not `Serialize`: with `key`, the arguments need not be.
struct User {
    id: u64,
    name: String,
}

#[redis_cache(ttl = 60, key = user.id)]
async fn greeting(user: &User) -> String {
    format!("hello {}", user.name)
}

struct Repo {
    tenant: u32,
}

impl Repo {
    #[redis_cache(ttl = 60, key = (self.tenant, &region))]
    async fn stock(&self, region: String, request_id: u64) -> u64 {
        let _ = request_id;
        region.len() as u64
    }
}

fn main() {
    let user = User { id: 1, name: "a".into() };
    let _ = greeting(&user);
    let _ = greeting_invalidate(&user);
    let repo = Repo { tenant: 1 };
    let _ = repo.stock("eu".into(), 7);
}
