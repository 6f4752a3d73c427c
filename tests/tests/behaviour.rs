//! The cache-aside contract against a real `redis-server` per test (the suite is shared with
//! `cluster.rs`, which runs it against a Redis Cluster).

use redis_cache_tests::deployment::Topology;

const TOPOLOGY: Topology = Topology::Single;

#[path = "suites/behaviour.rs"]
mod behaviour;
