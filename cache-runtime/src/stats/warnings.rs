//! Rate-limited warnings: a problem that repeats on every call (Redis timing out, entries that
//! cannot be read) is logged at `warn` once per interval per function, with how many similar
//! ones were held back, instead of flooding the log.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

/// At most one warning per function in this interval.
pub(crate) const WARN_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(crate) struct Throttle {
    /// Unix milliseconds before which warnings are held back.
    quiet_until_ms: AtomicU64,
    held_back: AtomicU64,
}

impl Throttle {
    pub(crate) const fn new() -> Self {
        Throttle {
            quiet_until_ms: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }

    /// `Some(n)`: log now, mentioning the `n` warnings held back since the last one. `None`: hold
    /// this one back.
    pub(crate) fn admit(&self) -> Option<u64> {
        let now = crate::envelope::unix_ms(SystemTime::now());
        let quiet_until = self.quiet_until_ms.load(Relaxed);
        let next = now.saturating_add(WARN_INTERVAL.as_millis() as u64);
        if now >= quiet_until
            && self
                .quiet_until_ms
                .compare_exchange(quiet_until, next, Relaxed, Relaxed)
                .is_ok()
        {
            return Some(self.held_back.swap(0, Relaxed));
        }
        self.held_back.fetch_add(1, Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_interval_counts_the_rest() {
        let t = Throttle::new();
        assert_eq!(t.admit(), Some(0));
        assert_eq!(t.admit(), None);
        assert_eq!(t.admit(), None);
        // As if the interval had passed.
        t.quiet_until_ms.store(0, Relaxed);
        assert_eq!(t.admit(), Some(2));
    }
}
