//! Batch functions against a real `redis-server` per test (the suite is shared with
//! `cluster.rs`, which runs it against a Redis Cluster).

redis_cache_tests::suite!(batch, redis_cache_tests::deployment::Topology::Single);
