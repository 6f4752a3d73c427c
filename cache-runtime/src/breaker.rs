//! The circuit breaker of one cache: after repeated timeouts or connection failures, calls stop
//! trying Redis for a while and run the function at once.
//!
//! - **Closed**: every command goes to Redis. `threshold` timeouts or dropped connections in a row
//!   open it; so does one failed connection attempt (refused, unreachable, or no handshake within
//!   the connect timeout), which leaves no doubt.
//! - **Open**: commands fail at once with [`CommandError::Unavailable`](crate::connection::CommandError)
//!   (one atomic load and a clock read). After the open interval, exactly one call is let through
//!   as a probe, by moving the next probe time forward with a compare-and-swap; the others keep
//!   skipping Redis. This is also how the cache reconnects: the probe makes the attempt.
//! - The probe's success closes it. Its failure doubles the interval, from `min_open` up to
//!   `max_open`. A probe that never reports (its caller was cancelled) is replaced by the next one
//!   an interval later.
//!
//! Only failures that say "Redis is not answering" count: timeouts and connection errors. A
//! server's error reply (OOM, READONLY, WRONGTYPE) proves it is alive and closes the breaker.
//! Transitions are logged once each (warn on open, info on close) and counted; calls are not.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The state of a cache's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BreakerState {
    /// Redis is used.
    Closed,
    /// Redis failed repeatedly; calls run the function without trying it, except a probe now and
    /// then.
    Open,
}

/// A snapshot of a cache's circuit breaker, from [`Cache::breaker`](crate::Cache::breaker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct BreakerStats {
    pub state: BreakerState,
    /// Times it opened since the cache was built.
    pub opened: u64,
    /// Times it closed again.
    pub closed: u64,
}

impl BreakerStats {
    /// Several breakers as one: open while any is, their openings and closings added up.
    pub(crate) fn sum(all: &[BreakerStats]) -> BreakerStats {
        BreakerStats {
            state: if all.iter().any(|b| b.state == BreakerState::Open) {
                BreakerState::Open
            } else {
                BreakerState::Closed
            },
            opened: all.iter().map(|b| b.opened).sum(),
            closed: all.iter().map(|b| b.closed).sum(),
        }
    }
}

/// One circuit breaker of a cache, from [`Cache::breakers`](crate::Cache::breakers): the
/// server's (or the Sentinel primary's), or on a Redis Cluster the slot map's (reading
/// `CLUSTER SLOTS` from the configured nodes) and one per primary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct NodeBreaker {
    /// What it guards: the server's URL (without password), a cluster primary's `host:port`,
    /// or a description of the deployment.
    pub node: String,
    #[serde(flatten)]
    pub stats: BreakerStats,
}

#[derive(Clone, Copy)]
pub(crate) struct BreakerSettings {
    pub threshold: u32,
    pub min_open: Duration,
    pub max_open: Duration,
    /// Told when a breaker opens, with the address and why: the configuration's notice for
    /// a process that would otherwise run uncached silently (`config::env::say_unreachable`).
    pub on_open: fn(&str, &dyn std::fmt::Display),
}

impl std::fmt::Debug for BreakerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerSettings")
            .field("threshold", &self.threshold)
            .field("min_open", &self.min_open)
            .field("max_open", &self.max_open)
            .finish_non_exhaustive()
    }
}

/// What a call may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Allow {
    /// Use Redis.
    Go,
    /// Skip Redis.
    Skip,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    settings: BreakerSettings,
    /// The cache's key prefix, naming the cache in logs and metrics.
    cache: String,
    /// Where Redis is (no password), for the messages.
    address: String,
    open: AtomicBool,
    /// While open: when the next probe may go, in nanoseconds since [`epoch`].
    probe_at: AtomicU64,
    /// The current open interval, in nanoseconds: doubles per failed probe.
    interval: AtomicU64,
    /// A probe is out; its failure (not another call's) lengthens the interval.
    probing: AtomicBool,
    failures: AtomicU32,
    opened: AtomicU64,
    closed: AtomicU64,
}

/// A process-wide origin for the atomics' timestamps.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn nanos_since_epoch(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

impl Breaker {
    pub(crate) fn new(settings: BreakerSettings, cache: String, address: String) -> Self {
        Breaker {
            settings,
            cache,
            address,
            open: AtomicBool::new(false),
            probe_at: AtomicU64::new(0),
            interval: AtomicU64::new(nanos(settings.min_open)),
            probing: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        }
    }

    /// Whether this call may use Redis. While open, one call per open interval (`min_open`,
    /// doubling up to `max_open`) gets [`Allow::Go`] as the probe.
    pub(crate) fn allow(&self) -> Allow {
        if !self.open.load(Ordering::Acquire) {
            return Allow::Go;
        }
        let now = nanos_since_epoch(Instant::now());
        let due = self.probe_at.load(Ordering::Acquire);
        if now < due {
            return Allow::Skip;
        }
        let next = now.saturating_add(self.interval.load(Ordering::Relaxed));
        match self
            .probe_at
            .compare_exchange(due, next, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                self.probing.store(true, Ordering::Relaxed);
                Allow::Go
            }
            Err(_) => Allow::Skip,
        }
    }

    /// Where the Redis this breaker guards is (no password): a server, or a cluster's primary.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// Whether calls skip Redis now (probes aside).
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Redis answered (even with an error reply).
    pub(crate) fn success(&self) {
        // Called on every answer: the common case (closed, no failures) only reads, so the
        // cache lines stay shared between the worker threads.
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.open.load(Ordering::Acquire) && self.open.swap(false, Ordering::AcqRel) {
            self.probing.store(false, Ordering::Relaxed);
            self.interval
                .store(nanos(self.settings.min_open), Ordering::Relaxed);
            self.closed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                cache = self.cache,
                "redis_cache: Redis answers again; circuit breaker closed, caching resumes"
            );
            #[cfg(feature = "metrics")]
            crate::stats::metrics::breaker_open(&self.cache, &self.address, false);
        }
    }

    /// A command timed out or its connection dropped.
    pub(crate) fn failure(&self, why: &dyn std::fmt::Display) {
        let failures = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if failures >= self.settings.threshold {
            self.trip(why);
        }
    }

    /// Opens at once (a connection attempt failed), or lengthens the interval after a failed
    /// probe.
    pub(crate) fn trip(&self, why: &dyn std::fmt::Display) {
        if self.open.load(Ordering::Acquire) {
            if self.probing.swap(false, Ordering::Relaxed) {
                let longer = self
                    .interval
                    .load(Ordering::Relaxed)
                    .saturating_mul(2)
                    .clamp(nanos(self.settings.min_open), nanos(self.settings.max_open));
                self.interval.store(longer, Ordering::Relaxed);
                self.probe_at.store(
                    nanos_since_epoch(Instant::now()).saturating_add(longer),
                    Ordering::Release,
                );
            }
            return;
        }
        let interval = self.interval.load(Ordering::Relaxed);
        self.probe_at.store(
            nanos_since_epoch(Instant::now()).saturating_add(interval),
            Ordering::Release,
        );
        if !self.open.swap(true, Ordering::AcqRel) {
            self.opened.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                cache = self.cache,
                address = self.address,
                error = %why,
                "redis_cache: Redis at {} is not answering; circuit breaker open, calls run \
                 uncached and Redis is probed at growing intervals (up to {:?})",
                self.address,
                self.settings.max_open
            );
            (self.settings.on_open)(&self.address, why);
            #[cfg(feature = "metrics")]
            crate::stats::metrics::breaker_open(&self.cache, &self.address, true);
        }
    }

    /// The node it guards left the deployment (a cluster primary replaced by its replica):
    /// nothing will probe it, so it stops reporting open. Not counted as a closing.
    pub(crate) fn retire(&self) {
        if self.open.swap(false, Ordering::AcqRel) {
            self.probing.store(false, Ordering::Relaxed);
            self.failures.store(0, Ordering::Relaxed);
            self.interval
                .store(nanos(self.settings.min_open), Ordering::Relaxed);
            #[cfg(feature = "metrics")]
            crate::stats::metrics::breaker_open(&self.cache, &self.address, false);
        }
    }

    pub(crate) fn stats(&self) -> BreakerStats {
        BreakerStats {
            state: if self.open.load(Ordering::Acquire) {
                BreakerState::Open
            } else {
                BreakerState::Closed
            },
            opened: self.opened.load(Ordering::Relaxed),
            closed: self.closed.load(Ordering::Relaxed),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_for: Duration) -> Breaker {
        Breaker::new(
            BreakerSettings {
                threshold: 3,
                min_open: open_for,
                max_open: open_for * 4,
                on_open: |_, _| {},
            },
            "test".into(),
            "redis://127.0.0.1:1".into(),
        )
    }

    #[test]
    fn opens_after_threshold_failures_in_a_row() {
        let b = breaker(Duration::from_secs(60));
        b.failure(&"timeout");
        b.failure(&"timeout");
        b.success();
        b.failure(&"timeout");
        b.failure(&"timeout");
        assert_eq!(b.allow(), Allow::Go, "a success resets the count");
        b.failure(&"timeout");
        assert_eq!(b.allow(), Allow::Skip);
        assert_eq!(b.stats().state, BreakerState::Open);
        assert_eq!(b.stats().opened, 1);
        b.failure(&"timeout");
        assert_eq!(b.stats().opened, 1, "counted once per opening");
    }

    #[test]
    fn exactly_one_probe_per_due_time_and_a_success_closes() {
        let b = breaker(Duration::from_secs(60));
        for _ in 0..3 {
            b.failure(&"timeout");
        }
        assert!((0..100).all(|_| b.allow() == Allow::Skip), "not due yet");
        // Due now: of many callers, one probes; the next probe is an interval away.
        b.probe_at.store(0, Ordering::Release);
        let probes = (0..100).filter(|_| b.allow() == Allow::Go).count();
        assert_eq!(probes, 1);
        b.success();
        assert_eq!(b.stats().state, BreakerState::Closed);
        assert_eq!((b.stats().opened, b.stats().closed), (1, 1));
        assert_eq!(b.allow(), Allow::Go);
    }

    #[test]
    fn a_failed_connection_opens_at_once_and_failed_probes_back_off() {
        let b = breaker(Duration::ZERO);
        b.trip(&"refused");
        assert_eq!(b.stats().state, BreakerState::Open);
        let b = breaker(Duration::from_millis(10));
        b.trip(&"refused");
        let interval = |b: &Breaker| b.interval.load(Ordering::Relaxed);
        assert_eq!(interval(&b), 10_000_000);
        // A failure that is not the probe's does not lengthen it.
        b.trip(&"refused");
        assert_eq!(interval(&b), 10_000_000);
        b.probing.store(true, Ordering::Relaxed);
        b.trip(&"refused");
        assert_eq!(interval(&b), 20_000_000);
        for _ in 0..5 {
            b.probing.store(true, Ordering::Relaxed);
            b.trip(&"refused");
        }
        assert_eq!(interval(&b), 40_000_000, "capped at max_open");
        b.success();
        assert_eq!(interval(&b), 10_000_000, "reset when closed");
    }
}
