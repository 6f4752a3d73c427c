//! Redis Cluster: the behaviour and stampede suites against a 6-node cluster (3 primaries, 3
//! replicas) per test, and what only a cluster has: clearing across primaries and failover.

use redis_cache_tests::deployment::Topology;

const TOPOLOGY: Topology = Topology::Cluster;

#[path = "suites/behaviour.rs"]
mod behaviour;

#[path = "suites/stampede.rs"]
mod stampede;
