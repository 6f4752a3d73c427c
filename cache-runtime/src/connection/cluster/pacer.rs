//! How often a cluster's slot map is read again in the background.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::connection::Timeouts;

/// Lets something happen at most once per interval, and one at a time (for at most a lease: a
/// claim whose task never ran, on a runtime no longer driven, does not block the next forever).
pub(super) struct Pacer {
    interval: Duration,
    lease: Duration,
    /// When the last claim was made, in nanoseconds since `origin` (0: never).
    last: AtomicU64,
    running: Arc<AtomicBool>,
    origin: Instant,
}

/// A turn of a [`Pacer`]; dropping it (done, failed or cancelled) lets the next one run.
pub(super) struct Turn(Arc<AtomicBool>);

impl Drop for Turn {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Pacer {
    pub(super) fn new(interval: Duration, timeouts: Timeouts) -> Self {
        Pacer {
            interval,
            // Twice what a read of the map may take (a primary, then the configured nodes).
            lease: (timeouts.connect + timeouts.command) * 4 + interval,
            last: AtomicU64::new(0),
            running: Arc::new(AtomicBool::new(false)),
            origin: Instant::now(),
        }
    }

    pub(super) fn claim(&self) -> Option<Turn> {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let now = nanos(self.origin.elapsed()).max(1);
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < nanos(self.interval) {
            return None;
        }
        let expired = now.saturating_sub(last) >= nanos(self.lease);
        if self.running.swap(true, Ordering::AcqRel) && !expired {
            return None;
        }
        self.last.store(now, Ordering::Relaxed);
        Some(Turn(self.running.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts(both: Duration) -> Timeouts {
        Timeouts {
            connect: both,
            command: both,
        }
    }

    #[test]
    fn a_pacer_lets_one_through_per_interval() {
        let pacer = Pacer::new(Duration::from_secs(60), timeouts(Duration::from_secs(1)));
        let claim = pacer.claim().expect("the first");
        assert!(pacer.claim().is_none(), "one at a time");
        drop(claim);
        assert!(pacer.claim().is_none(), "not again within the interval");
        let pacer = Pacer::new(Duration::ZERO, timeouts(Duration::from_secs(1)));
        drop(pacer.claim().expect("the first"));
        assert!(
            pacer.claim().is_some(),
            "the interval passed, and the first ended"
        );
        // A claim never dropped (its task never ran) blocks the next for its lease only.
        let pacer = Pacer::new(Duration::ZERO, timeouts(Duration::ZERO));
        let stuck = pacer.claim().expect("the first");
        assert!(pacer.claim().is_some(), "the lease of the first ran out");
        drop(stuck);
    }
}
