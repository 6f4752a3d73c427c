//! Tags against a real `redis-server` per test (the suite is shared with `cluster.rs`).

redis_cache_tests::suite!(tags, redis_cache_tests::deployment::Topology::Single);
