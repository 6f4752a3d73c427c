//! A lock-free latency histogram: log-linear buckets of microseconds, recorded with relaxed
//! atomics, so timing a call costs a few uncontended additions and no lock.
//!
//! Each power of two is split into [`SUB_BUCKETS`] equal buckets, so a reported quantile is within
//! 12.5% of the true value, from 1 µs up to about 4.7 hours (longer durations land in the last
//! bucket). The same shape as an HDR histogram with three significant bits, in 2 KiB.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

const SUB_BITS: u32 = 3;
const SUB_BUCKETS: u64 = 1 << SUB_BITS;
const BUCKETS: usize = 256;

/// Latencies recorded so far.
#[derive(Debug)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
    max_us: AtomicU64,
}

/// A summary of recorded durations, in microseconds.
///
/// Quantiles are bucket upper bounds: within 12.5% above the true value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Latency {
    /// Durations recorded.
    pub count: u64,
    pub mean_us: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl Histogram {
    pub(crate) const fn new() -> Self {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
            sum_us: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
        }
    }

    pub(crate) fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.buckets[index(us)].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        self.max_us.fetch_max(us, Relaxed);
    }

    /// The bucket counts, to merge histograms before summarizing them.
    pub(crate) fn counts(&self) -> Counts {
        Counts {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Relaxed)),
            sum_us: self.sum_us.load(Relaxed),
            max_us: self.max_us.load(Relaxed),
        }
    }
}

/// A copy of a histogram's counts.
#[derive(Debug, Clone)]
pub(crate) struct Counts {
    buckets: [u64; BUCKETS],
    sum_us: u64,
    max_us: u64,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            buckets: [0; BUCKETS],
            sum_us: 0,
            max_us: 0,
        }
    }
}

impl Counts {
    pub(crate) fn merge(&mut self, other: &Counts) {
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        self.max_us = self.max_us.max(other.max_us);
    }

    pub(crate) fn summary(&self) -> Latency {
        let count: u64 = self.buckets.iter().sum();
        if count == 0 {
            return Latency::default();
        }
        let quantile = |q: f64| {
            // The rank of the q-quantile, 1-based: the smallest value with at least q of the
            // recordings at or below it.
            let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
            let mut seen = 0;
            for (i, n) in self.buckets.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return upper_bound(i).min(self.max_us);
                }
            }
            self.max_us
        };
        Latency {
            count,
            mean_us: self.sum_us / count,
            p50_us: quantile(0.50),
            p90_us: quantile(0.90),
            p99_us: quantile(0.99),
            max_us: self.max_us,
        }
    }
}

/// The bucket of `us`: exact below `SUB_BUCKETS`, then `SUB_BUCKETS` per power of two.
fn index(us: u64) -> usize {
    if us < SUB_BUCKETS {
        return us as usize;
    }
    let power = 63 - us.leading_zeros(); // >= SUB_BITS
    let sub = (us >> (power - SUB_BITS)) & (SUB_BUCKETS - 1);
    let i = SUB_BUCKETS + u64::from(power - SUB_BITS) * SUB_BUCKETS + sub;
    (i as usize).min(BUCKETS - 1)
}

/// The largest value that falls into bucket `i`.
fn upper_bound(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB_BUCKETS {
        return i;
    }
    let power = (i - SUB_BUCKETS) / SUB_BUCKETS + u64::from(SUB_BITS);
    let sub = (i - SUB_BUCKETS) % SUB_BUCKETS;
    let width = 1u64 << (power - u64::from(SUB_BITS));
    let start = (1u64 << power) + sub * width;
    start.saturating_add(width - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_values_within_an_eighth() {
        for us in (0..100_000u64).chain([1 << 30, (1 << 33) + 12_345]) {
            let i = index(us);
            assert!(upper_bound(i) >= us, "{us} above its bucket {i}");
            assert!(
                upper_bound(i) as f64 <= us as f64 * 1.125 + 1.0,
                "{us}: bound {}",
                upper_bound(i)
            );
            if i > 0 {
                assert!(upper_bound(i - 1) < us, "{us} belongs lower than {i}");
            }
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let h = Histogram::new();
        for us in 1..=1000 {
            h.record(Duration::from_micros(us));
        }
        let s = h.counts().summary();
        assert_eq!((s.count, s.mean_us, s.max_us), (1000, 500, 1000));
        for (got, want) in [(s.p50_us, 500), (s.p90_us, 900), (s.p99_us, 990)] {
            assert!(
                got >= want && got as f64 <= want as f64 * 1.125,
                "{got} vs {want}"
            );
        }
    }

    #[test]
    fn merged_counts_summarize_both() {
        let (a, b) = (Histogram::new(), Histogram::new());
        a.record(Duration::from_micros(10));
        b.record(Duration::from_micros(3000));
        let mut merged = a.counts();
        merged.merge(&b.counts());
        let s = merged.summary();
        assert_eq!((s.count, s.max_us, s.mean_us), (2, 3000, 1505));
        assert!(s.p50_us >= 10 && s.p50_us < 12);
    }
}
