//! Running one case: `tasks` concurrent loops for a fixed time, each call timed.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Work a call leaves behind, done after its latency is taken (and before the next call).
pub trait Untimed: Send {
    fn settle(self) -> impl Future<Output = ()> + Send;
}

impl Untimed for () {
    async fn settle(self) {}
}

/// The cache's background work: with background stores a miss returns before its store lands,
/// and back-to-back misses would otherwise queue behind the previous call's store, which a caller
/// does not wait for.
pub struct Flush(pub redis_cached::Cache);

impl Untimed for Flush {
    async fn settle(self) {
        self.0.flush().await;
    }
}

/// What one case measured.
#[derive(Debug, Clone)]
pub struct Sample {
    pub calls: u64,
    pub elapsed: Duration,
    /// CPU time this process spent (all threads), from the kernel's scheduler statistics.
    pub cpu: Duration,
    /// Per-call latencies, sorted.
    latencies: Vec<Duration>,
}

impl Sample {
    pub fn ops_per_sec(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let at = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[at]
    }

    /// This process's CPU time per call: what the client side costs, whatever else the machine
    /// is doing.
    pub fn cpu_per_call(&self) -> Duration {
        self.cpu / u32::try_from(self.calls.max(1)).unwrap_or(u32::MAX)
    }

    /// Two samples of the same case, as one.
    pub fn merge(mut self, other: Sample) -> Sample {
        self.calls += other.calls;
        self.elapsed += other.elapsed;
        self.cpu += other.cpu;
        self.latencies.extend(other.latencies);
        self.latencies.sort_unstable();
        self
    }
}

/// Runs `op(rng)` in `tasks` concurrent tasks for `time` and returns the calls made, their
/// latencies and the wall time.
pub async fn run<F, Fut, A>(tasks: usize, time: Duration, op: F) -> Sample
where
    F: Fn(&mut fastrand::Rng) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = A> + Send,
    A: Untimed + 'static,
{
    let op = Arc::new(op);
    let cpu_before = cpu_time();
    let started = Instant::now();
    // Each task watches the clock itself: a case whose calls never yield (the function called
    // directly, the breaker open) would starve a timer.
    let deadline = started + time;
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(task as u64 + 1);
                let mut latencies = Vec::with_capacity(1 << 16);
                let mut now = Instant::now();
                while now < deadline {
                    let after = op(&mut rng).await;
                    latencies.push(now.elapsed());
                    after.settle().await;
                    now = Instant::now();
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(handle.await.expect("a benchmark task panicked"));
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    latencies.sort_unstable();
    Sample {
        calls: latencies.len() as u64,
        elapsed,
        cpu,
        latencies,
    }
}

/// CPU time used so far by every thread of this process (`/proc/self/task/*/schedstat`, in
/// nanoseconds); zero where that is not available.
pub fn cpu_time() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

/// The median of a case's rounds.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}
