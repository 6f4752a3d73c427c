//! A Redis Cluster, routed by the cache: each key's commands go to the primary serving its slot,
//! over that primary's own connection, through that primary's own circuit breaker.
//!
//! So a failing primary costs only its own keys: while it fails over, calls for the other
//! primaries' keys keep hitting, and calls for its keys run the function at once (once its
//! breaker is open) instead of waiting on it. A connection shared by the whole cluster (redis-rs's
//! cluster client) holds every command while it refreshes its slot map, and there one dead
//! node's timeout stalled all shards for the length of the command timeout
//! (`a_failing_primary_sends_only_its_own_keys_to_the_function` in `tests/tests/cluster.rs`).
//!
//! - [`route`]: sending a command to the primary of its key's slot, following `MOVED` and `ASK`,
//!   and splitting a multi-key `UNLINK` by slot;
//! - [`topology`]: reading `CLUSTER SLOTS` into the [`slot_map`], making and retiring primaries;
//! - [`pacer`]: how often the map is read again in the background;
//! - here: the cluster's state, and its breakers summed up.

mod pacer;
mod route;
mod slot_map;
mod topology;

use std::sync::atomic::{AtomicBool, AtomicU8};

use redis::Client;

use super::Timeouts;
use super::deployment::Deployment;
use super::server::Server;
use crate::breaker::{Breaker, BreakerSettings, BreakerStats};
use pacer::Pacer;
use slot_map::{Addressed, SlotMap};

/// The cache's view of one Redis Cluster.
pub(super) struct Cluster {
    /// The configured nodes, for the pub/sub and tracking clients.
    deployment: Deployment,
    /// Their clients: where the slot map is read when no known primary answers.
    seeds: Vec<Client>,
    /// The breaker of reading the slot map from the configured nodes (named after them).
    topology: Breaker,
    map: SlotMap<Primary>,
    timeouts: Timeouts,
    settings: BreakerSettings,
    /// The cache's key prefix, naming it in logs and metrics.
    cache: String,
    /// One read of an unknown map at a time: the callers that need it wait for it.
    reading: tokio::sync::Mutex<()>,
    /// Background reads of the map: one at a time, at most once per `min_open`.
    refresh: Pacer,
    /// Reads from the configured nodes in the background: at most once per `max_open`.
    reseed: Pacer,
    /// The first primary made logs the server's health.
    announced: AtomicBool,
    /// Refusals of the slot map's reads already logged (bits of [`Refusal`]).
    refusals_logged: AtomicU8,
    /// The openings and closings of the breakers of primaries that left the map.
    retired: std::sync::Mutex<BreakerStats>,
}

/// One primary: its address as the cluster announces it, and its connection and breaker.
pub(super) struct Primary {
    address: String,
    host: String,
    port: u16,
    server: Server,
}

impl Addressed for Primary {
    fn address(&self) -> &str {
        &self.address
    }
}

impl Cluster {
    /// The cluster of `deployment`'s configured nodes, which `address` describes.
    pub(in crate::connection) fn new(
        deployment: Deployment,
        address: String,
        timeouts: Timeouts,
        settings: BreakerSettings,
        cache: &str,
    ) -> Self {
        let seeds = match &deployment {
            Deployment::Cluster { nodes } => nodes.clone(),
            _ => Vec::new(),
        };
        Cluster {
            deployment,
            seeds,
            topology: Breaker::new(settings, cache.to_string(), address),
            map: SlotMap::new(),
            timeouts,
            settings,
            cache: cache.to_string(),
            reading: tokio::sync::Mutex::new(()),
            refresh: Pacer::new(settings.min_open, timeouts),
            reseed: Pacer::new(settings.max_open, timeouts),
            announced: AtomicBool::new(false),
            refusals_logged: AtomicU8::new(0),
            retired: std::sync::Mutex::new(BreakerStats::sum(&[])),
        }
    }

    /// Lets go of `primary`, which left the map: its connection closes, its breaker's counts
    /// are kept in the totals.
    fn retire(&self, primary: &Primary) {
        let breaker = primary.server.breaker();
        let stats = breaker.stats();
        let mut retired = crate::sync::guard(&self.retired);
        retired.opened += stats.opened;
        retired.closed += stats.closed;
        drop(retired);
        breaker.retire();
        primary.server.disconnect();
    }

    pub(in crate::connection) fn deployment(&self) -> &Deployment {
        &self.deployment
    }

    /// The breakers summed up: open while the slot map's or a current primary's is, with the
    /// openings and closings of every primary this cache has known.
    pub(in crate::connection) fn breaker_totals(&self) -> BreakerStats {
        let current = std::iter::once(self.topology.stats())
            .chain(
                self.map
                    .serving()
                    .iter()
                    .map(|s| s.server.breaker().stats()),
            )
            .collect::<Vec<_>>();
        let all = self.all_breakers();
        BreakerStats {
            state: BreakerStats::sum(&current).state,
            ..BreakerStats::sum(&all)
        }
    }

    /// The slot map's breaker, then each current primary's, by address.
    pub(in crate::connection) fn breakers(&self) -> Vec<(String, BreakerStats)> {
        let topology = (self.topology.address().to_string(), self.topology.stats());
        let shards = self.map.serving().into_iter().map(|shard| {
            let breaker = shard.server.breaker();
            (breaker.address().to_string(), breaker.stats())
        });
        std::iter::once(topology).chain(shards).collect()
    }

    /// The slot map's breaker, those of the current primaries, and the counts of those that
    /// left.
    pub(in crate::connection) fn all_breakers(&self) -> Vec<BreakerStats> {
        let shards = self.map.all().into_iter();
        let retired = *crate::sync::guard(&self.retired);
        [self.topology.stats(), retired]
            .into_iter()
            .chain(shards.map(|shard| shard.server.breaker().stats()))
            .collect()
    }

    /// A write went through: each primary logs its refusals again if they come back.
    pub(in crate::connection) fn write_succeeded(&self) {
        for shard in self.map.all() {
            shard.server.write_succeeded();
        }
    }
}
