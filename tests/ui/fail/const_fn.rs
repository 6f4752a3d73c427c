use redis_cached::redis_cache;

#[redis_cache(ttl = 60)]
const fn answer(id: u64) -> u64 {
    id
}

fn main() {
    let _: u64 = answer(1) + answer_refresh(1);
}
