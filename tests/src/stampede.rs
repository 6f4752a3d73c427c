//! Several OS processes calling one cold key at once: the worker side and the driver side.
//!
//! A worker connects, prints `ready`, waits for `go` on its stdin, runs its callers of
//! [`fixtures::cold`] concurrently and prints one `report` line. The driver starts the workers,
//! waits until every one is ready, then releases them together: the start line is an event, not a
//! sleep.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use redis_cached::{Cache, CacheBuilder, stats_for};

use crate::fixtures::{self, COLD_HANG, COLD_RUNS, COLD_WORK_MS};

/// The key every caller asks for.
pub const HOT_ID: u64 = 1;

/// How one worker process runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub url: String,
    pub prefix: String,
    /// Concurrent callers of the hot key in this process.
    pub callers: usize,
    /// How long the function works.
    pub work_ms: u64,
    /// The cache's lock lease.
    pub lease_ms: u64,
    /// The function never finishes (a lock holder to kill); it prints `computing` when it starts.
    pub hang: bool,
}

impl WorkerConfig {
    pub fn to_args(&self) -> Vec<String> {
        vec![
            self.url.clone(),
            self.prefix.clone(),
            self.callers.to_string(),
            self.work_ms.to_string(),
            self.lease_ms.to_string(),
            self.hang.to_string(),
        ]
    }

    pub fn from_args(args: &[String]) -> WorkerConfig {
        let [url, prefix, callers, work_ms, lease_ms, hang] = args else {
            panic!("worker arguments: url prefix callers work_ms lease_ms hang, got {args:?}");
        };
        WorkerConfig {
            url: url.clone(),
            prefix: prefix.clone(),
            callers: callers.parse().expect("callers"),
            work_ms: work_ms.parse().expect("work_ms"),
            lease_ms: lease_ms.parse().expect("lease_ms"),
            hang: hang.parse().expect("hang"),
        }
    }

    /// The settings of this worker's cache.
    pub fn builder(&self) -> CacheBuilder {
        Cache::builder()
            .url(&self.url)
            .prefix(&self.prefix)
            .connect_timeout(crate::TEST_TIMEOUT)
            .command_timeout(crate::TEST_TIMEOUT)
            .lock_lease(Duration::from_millis(self.lease_ms))
    }

    /// The cache this worker uses.
    pub fn cache(&self) -> Cache {
        self.builder().build().expect("valid worker cache")
    }
}

/// What one worker process saw.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub calls: u64,
    /// Times the function ran in this process.
    pub executions: u64,
    /// Callers that waited longer than the function's work plus 10 ms.
    pub slow: u64,
    /// The slowest call, in microseconds.
    pub max_micros: u64,
    pub hits: u64,
    pub misses: u64,
    pub coalesced: u64,
    pub lock_waits: u64,
    /// The distinct values callers received.
    pub values: BTreeSet<String>,
}

impl Report {
    fn to_line(&self) -> String {
        let values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        format!(
            "report {} {} {} {} {} {} {} {} {}",
            self.calls,
            self.executions,
            self.slow,
            self.max_micros,
            self.hits,
            self.misses,
            self.coalesced,
            self.lock_waits,
            values.join("|"),
        )
    }

    fn parse(line: &str) -> Option<Report> {
        let rest = line.strip_prefix("report ")?;
        let mut fields = rest.splitn(9, ' ');
        let mut num = || fields.next()?.parse::<u64>().ok();
        let mut report = Report {
            calls: num()?,
            executions: num()?,
            slow: num()?,
            max_micros: num()?,
            hits: num()?,
            misses: num()?,
            coalesced: num()?,
            lock_waits: num()?,
            values: BTreeSet::new(),
        };
        report.values = fields
            .next()?
            .split('|')
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect();
        Some(report)
    }

    /// Sums the reports of several workers.
    pub fn total(reports: &[Report]) -> Report {
        let mut total = Report::default();
        for r in reports {
            total.calls += r.calls;
            total.executions += r.executions;
            total.slow += r.slow;
            total.max_micros = total.max_micros.max(r.max_micros);
            total.hits += r.hits;
            total.misses += r.misses;
            total.coalesced += r.coalesced;
            total.lock_waits += r.lock_waits;
            total.values.extend(r.values.iter().cloned());
        }
        total
    }
}

/// The worker's side: run from a binary's `main` inside a Tokio runtime.
pub async fn worker(config: WorkerConfig) {
    let cache = config.cache();
    COLD_WORK_MS.store(config.work_ms, SeqCst);
    // Warm the connection on a key of our own, so the start line measures the stampede only.
    fixtures::cold(&cache, 1_000_000 + u64::from(std::process::id())).await;
    cache.flush().await;
    let before = COLD_RUNS.load(SeqCst);
    let stats_before = stats_for("fixtures::cold").expect("cold was called");
    COLD_HANG.store(config.hang, SeqCst);

    println!("ready");
    std::io::stdout().flush().expect("stdout");
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).expect("stdin");

    let tasks: Vec<_> = (0..config.callers)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let value = fixtures::cold(&cache, HOT_ID).await;
                (value, started.elapsed())
            })
        })
        .collect();
    let threshold = Duration::from_millis(config.work_ms + 10);
    let mut report = Report::default();
    for task in tasks {
        let (value, waited) = task.await.expect("caller task");
        report.calls += 1;
        report.slow += u64::from(waited > threshold);
        report.max_micros = report.max_micros.max(waited.as_micros() as u64);
        report.values.insert(value);
    }
    cache.flush().await;
    let stats = stats_for("fixtures::cold").expect("cold was called");
    report.executions = COLD_RUNS.load(SeqCst) - before;
    report.hits = stats.hits - stats_before.hits;
    report.misses = stats.misses - stats_before.misses;
    report.coalesced = stats.coalesced - stats_before.coalesced;
    report.lock_waits = stats.lock_waits - stats_before.lock_waits;
    println!("{}", report.to_line());
}

/// A running worker process.
#[derive(Debug)]
pub struct Worker {
    child: Child,
    lines: std::io::Lines<BufReader<ChildStdout>>,
}

impl Worker {
    /// Starts `program args... <worker args>` and waits for its `ready` line.
    pub fn start(program: &Path, args: &[&str], config: &WorkerConfig) -> Worker {
        let mut child = Command::new(program)
            .args(args)
            .args(config.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("start worker {}: {err}", program.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut worker = Worker {
            child,
            lines: BufReader::new(stdout).lines(),
        };
        worker.expect_line("ready");
        worker
    }

    /// Reads lines until one equals `wanted`.
    pub fn expect_line(&mut self, wanted: &str) {
        for line in self.lines.by_ref() {
            if line.expect("worker stdout") == wanted {
                return;
            }
        }
        panic!("worker ended before printing {wanted:?}");
    }

    pub fn go(&mut self) {
        let stdin = self.child.stdin.as_mut().expect("piped stdin");
        stdin.write_all(b"go\n").expect("write go");
        stdin.flush().expect("flush go");
    }

    /// Waits for the report and the exit.
    pub fn report(mut self) -> Report {
        let report = self
            .lines
            .by_ref()
            .find_map(|line| Report::parse(&line.expect("worker stdout")))
            .expect("worker printed no report");
        let status = self.child.wait().expect("wait worker");
        assert!(status.success(), "worker failed: {status}");
        report
    }

    /// Kills the process (SIGKILL): whatever it held is never released.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts one worker per config, releases them together, and returns their reports.
pub fn run_workers(program: &Path, args: &[&str], configs: &[WorkerConfig]) -> Vec<Report> {
    let mut workers: Vec<Worker> = configs
        .iter()
        .map(|config| Worker::start(program, args, config))
        .collect();
    for worker in &mut workers {
        worker.go();
    }
    workers.into_iter().map(Worker::report).collect()
}
