use redis_cached::redis_cache;

#[derive(serde::Serialize)]
struct User {
    id: u64,
    is_admin: bool,
}

#[redis_cache(ttl = 60, condition = !user.is_admin)]
async fn profile(user: &User) -> String {
    user.id.to_string()
}

struct Repo {
    caching: bool,
}

impl Repo {
    // `self` and the arguments are in scope; with `local` too.
    #[redis_cache(ttl = 60, local = 10, condition = self.caching && id > 0)]
    async fn item(&self, id: u64) -> u64 {
        id
    }
}

fn main() {
    let user = User { id: 1, is_admin: false };
    let _ = profile(&user);
    let _ = Repo { caching: true }.item(1);
}
