//! Invalidation on one server: the suite in `suites/invalidation.rs` (`tests/cluster.rs` runs it
//! on a cluster too).

redis_cache_tests::suite!(
    invalidation,
    redis_cache_tests::deployment::Topology::Single
);
