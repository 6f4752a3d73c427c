//! Test support: real `redis-server` processes on free loopback ports, owned by the test.
//!
//! Each [`RedisServer`] is a child process bound to `127.0.0.1` on a port nobody else holds; it is
//! killed when dropped. Readiness is an event (the server's own "Ready to accept connections"
//! line), never a sleep.

pub mod cluster;
pub mod deployment;
pub mod failover;
pub mod faults;
pub mod fixtures;
pub mod hostile;
pub mod local;
pub mod logs;
pub mod sentinel;
pub mod stampede;
pub mod stub_node;
pub mod tls;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis_cached::{Cache, CacheBuilder};

/// The lock of the entry `key` (`{prefix}:{function}:{fingerprint}:{{args}}`), spelled as the
/// library does: `…:#{args}:lock`, same hash tag, outside the prefix a local tier tracks. Written
/// out here rather than borrowed from the library, so the tests pin the spelling.
pub fn lock_of(key: &str) -> String {
    let at = key
        .rfind(":{")
        .expect("an entry key ends with its hash tag");
    format!("{}#{}:lock", &key[..=at], &key[at + 1..])
}

/// Counts one test's executions of a function body: pass `&Runs` as a skipped argument and
/// [`tick`](Runs::tick) in the body. It belongs to the test, so tests need no `static` per
/// function, and it is independent of the library's own counters, which tests check against it.
#[derive(Debug, Default)]
pub struct Runs(AtomicU64);

impl Runs {
    pub fn tick(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    pub fn count(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A point a test and the bodies it calls meet at, without sleeping: a body [`arrive`]s (or
/// [`wait`]s: arrives, then holds until the test [`open`]s the gate); the test awaits
/// [`until_arrived`].
///
/// [`arrive`]: Gate::arrive
/// [`wait`]: Gate::wait
/// [`open`]: Gate::open
/// [`until_arrived`]: Gate::until_arrived
#[derive(Debug)]
pub struct Gate {
    arrived: AtomicU64,
    opened: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl Gate {
    pub const fn new() -> Self {
        Gate {
            arrived: AtomicU64::new(0),
            opened: std::sync::atomic::AtomicBool::new(false),
            notify: tokio::sync::Notify::const_new(),
        }
    }

    pub fn arrive(&self) {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Arrives, then holds until the gate is open.
    pub async fn wait(&self) {
        self.arrive();
        self.until(|gate| gate.opened.load(Ordering::SeqCst)).await;
    }

    pub fn open(&self) {
        self.opened.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Returns once `n` arrivals were counted.
    pub async fn until_arrived(&self, n: u64) {
        self.until(|gate| gate.arrived.load(Ordering::SeqCst) >= n)
            .await;
    }

    async fn until(&self, done: impl Fn(&Gate) -> bool) {
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before looking, so a change in between is not missed.
            notified.as_mut().enable();
            if done(self) {
                return;
            }
            notified.await;
        }
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

/// Records what a batch function was called with: pass `&Keys` as a skipped argument and
/// [`record`](Keys::record) the keys in the body. Tells how often each key was computed, and
/// with which others.
#[derive(Debug, Default)]
pub struct Keys(std::sync::Mutex<Vec<Vec<u64>>>);

impl Keys {
    pub fn record<'a>(&self, keys: impl IntoIterator<Item = &'a u64>) {
        let mut keys: Vec<u64> = keys.into_iter().copied().collect();
        keys.sort_unstable();
        self.0.lock().unwrap().push(keys);
    }

    /// Each call's keys, sorted, in the order the calls began.
    pub fn calls(&self) -> Vec<Vec<u64>> {
        self.0.lock().unwrap().clone()
    }

    /// How many times each key was computed.
    pub fn per_key(&self) -> std::collections::BTreeMap<u64, u64> {
        let mut counts = std::collections::BTreeMap::new();
        for key in self.0.lock().unwrap().iter().flatten() {
            *counts.entry(*key).or_default() += 1;
        }
        counts
    }
}

/// The deadline of the tests' own connections, which inspect and tamper with what the cache
/// stored: only a hung server should trip it.
pub const INSPECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// A `redis-server` child process on `127.0.0.1:port`.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a server on a free port, with no persistence.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts a server with extra `--name value` configuration, e.g. `["--maxmemory", "1mb"]`.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        Self::start_on_free_port("redis-server", || Some(free_port()), |_| strings(extra))
    }

    /// Starts a cluster-enabled node (`extra` says so) on a port whose cluster bus port (10000
    /// higher) is free too, with a cluster config file of its own in `--dir`.
    pub fn start_cluster_node(extra: &[&str]) -> RedisServer {
        let pick = || {
            let port = 20000 + fastrand::u16(..10000);
            let free = |p: u16| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok();
            (free(port) && free(port + 10000)).then_some(port)
        };
        Self::start_on_free_port("a cluster node", pick, |port| {
            let mut args = strings(extra);
            args.extend(["--cluster-config-file".into(), format!("nodes-{port}.conf")]);
            args
        })
    }

    /// Starts a server that listens with TLS only (`rediss://127.0.0.1:port`); `extra` names
    /// its certificates.
    pub fn start_tls(extra: &[&str]) -> RedisServer {
        Self::start_on_free_port(
            "a TLS redis-server",
            || Some(free_port()),
            |port| {
                let mut args = strings(&["--tls-port", &port.to_string(), "--port", "0"]);
                args.extend(strings(extra));
                args
            },
        )
    }

    /// Starts a server on a port `pick` offers (`None`: try another), with the arguments `args`
    /// gives for it. A port freed by the kernel can be taken by someone else before the server
    /// binds it: a few ports are tried before giving up.
    fn start_on_free_port(
        what: &str,
        pick: impl Fn() -> Option<u16>,
        args: impl Fn(u16) -> Vec<String>,
    ) -> RedisServer {
        let mut last_err = String::new();
        for _ in 0..20 {
            let Some(port) = pick() else { continue };
            let extra = args(port);
            match spawn(port, &extra) {
                Ok(child) => {
                    return RedisServer {
                        port,
                        child: Some(child),
                        extra,
                    };
                }
                Err(err) => last_err = err,
            }
        }
        panic!("could not start {what}: {last_err}");
    }

    /// Starts a server on `port` (e.g. where a cache was already pointed while nothing listened).
    pub fn start_at(port: u16, extra: &[&str]) -> RedisServer {
        let extra = strings(extra);
        let child =
            spawn(port, &extra).unwrap_or_else(|err| panic!("start redis-server on {port}: {err}"));
        RedisServer {
            port,
            child: Some(child),
            extra,
        }
    }

    /// Owns a process started some other way (a sentinel): killed when dropped.
    fn adopt(port: u16, child: Child) -> RedisServer {
        RedisServer {
            port,
            child: Some(child),
            extra: Vec::new(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A builder for this server with the test timeouts.
    pub fn builder(&self) -> CacheBuilder {
        test_builder().url(self.url())
    }

    /// A cache on this server with its own prefix and the test settings ([`test_builder`]).
    pub fn cache(&self, prefix: &str) -> Cache {
        self.builder()
            .prefix(prefix)
            .build()
            .expect("valid test cache")
    }

    /// A plain client for inspecting and tampering with the server's contents.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("valid url")
    }

    /// A connection for inspecting and tampering with the contents. Its deadline is long: a
    /// `KEYS` over 100,000 keys on a loaded machine is slower than redis-rs's default 500 ms.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(INSPECTION_TIMEOUT))
            .set_connection_timeout(Some(INSPECTION_TIMEOUT));
        self.client()
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .expect("connect to test redis")
    }

    /// Removes every key.
    pub async fn flush(&self) {
        let mut conn = self.connection().await;
        redis::cmd("FLUSHALL")
            .query_async::<()>(&mut conn)
            .await
            .expect("FLUSHALL");
    }

    /// Every key, sorted.
    pub async fn keys(&self) -> Vec<String> {
        let mut conn = self.connection().await;
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut conn)
            .await
            .expect("KEYS");
        keys.sort();
        keys
    }

    /// Makes the entry at `key` stale: its header says it stopped being fresh a millisecond after
    /// it was computed, its Redis TTL (the stale window) is left alone. Its new bytes.
    pub async fn make_stale(&self, key: &str) -> Vec<u8> {
        let mut conn = self.connection().await;
        let mut bytes: Vec<u8> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("GET the entry");
        let computed_at = u64::from_le_bytes(bytes[8..16].try_into().expect("a header"));
        bytes[16..24].copy_from_slice(&computed_at.saturating_sub(1).to_le_bytes());
        redis::cmd("SET")
            .arg(key)
            .arg(&bytes)
            .arg("KEEPTTL")
            .query_async::<()>(&mut conn)
            .await
            .expect("SET the entry");
        bytes
    }

    /// Every key but the tags' sets and marks (`{prefix}:#tag:{...}`), sorted: the entries and
    /// locks.
    pub async fn keys_but_tags(&self) -> Vec<String> {
        let mut keys = self.keys().await;
        keys.retain(|k| !k.contains(":#tag:"));
        keys
    }

    /// Ends the server abruptly (SIGKILL): connections drop, nothing is saved.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server; same as [`kill`](Self::kill) for a cache without persistence.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts the server again on the same port and configuration (after a stop or kill).
    pub fn restart(&mut self) {
        self.kill();
        let child = spawn(self.port, &self.extra)
            .unwrap_or_else(|err| panic!("restart redis-server on {}: {err}", self.port));
        self.child = Some(child);
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|child| child.id())
    }

    /// Freezes the process (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a [`pause`](Self::pause)d process (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        signal_all(&[self], signal);
    }

    /// `redis-cli -p PORT args...`'s output (empty when the server does not answer).
    pub fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Application clients connected now: not the `redis-cli` that asks, not replication links
    /// (`flags` S or M), not sentinels (they name their connections `sentinel-...`).
    pub fn connected_clients(&self) -> usize {
        self.cli(&["CLIENT", "LIST"])
            .lines()
            .filter(|line| {
                let field = |name: &str| {
                    line.split_whitespace()
                        .find_map(|f| f.strip_prefix(name))
                        .unwrap_or("")
                };
                !field("cmd=").starts_with("client|list")
                    && !field("flags=").contains(['S', 'M'])
                    && !field("name=").starts_with("sentinel-")
            })
            .count()
    }

    /// Runs one command on a fresh connection and returns its reply.
    pub async fn command<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let mut conn = self.connection().await;
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query_async(&mut conn).await
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(scratch_dir(self.port));
    }
}

/// Sends `signal` (`-STOP`, `-CONT`) to every server in one `kill`, so that a cluster's nodes
/// are frozen and thawed together, not one process spawn apart.
pub fn signal_all(servers: &[&RedisServer], signal: &str) {
    let pids: Vec<String> = servers
        .iter()
        .map(|s| s.child.as_ref().expect("server running").id().to_string())
        .collect();
    let status = Command::new("kill")
        .arg(signal)
        .args(&pids)
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pids:?}");
}

/// Deadlines of [`test_builder`]: far above any healthy reply on a loaded CI machine, so a test
/// that counts hits, writes or errors never sees a slow reply turn into a timeout. A refused or
/// dropped connection still fails at once; tests about slow or frozen servers set their own.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Test settings: generous deadlines ([`TEST_TIMEOUT`]), and a breaker that probes again within
/// 100 ms.
pub fn test_builder() -> CacheBuilder {
    Cache::builder()
        .connect_timeout(TEST_TIMEOUT)
        .command_timeout(TEST_TIMEOUT)
        .circuit_breaker(5, Duration::from_millis(10), Duration::from_millis(100))
}

/// A cache whose Redis is not there: a loopback port nothing listens on, so connections are
/// refused at once.
pub fn unreachable_cache(prefix: &str) -> Cache {
    Cache::builder()
        .url(format!("redis://127.0.0.1:{}", free_port()))
        .prefix(prefix)
        .build()
        .expect("a valid configuration")
}

/// How long [`settled`] and [`eventually`] poll before giving up: far above what any of the
/// states they wait for takes on a loaded machine.
pub const POLL_BOUND: Duration = Duration::from_secs(30);

/// Polls `count` until it equals `expected`, for at most [`POLL_BOUND`]; returns the last count.
/// For counts that nothing announces and that settle asynchronously, like the clients a server
/// sees after a connection is dropped. Sleeps the task, not the thread.
pub async fn settled(expected: usize, count: impl Fn() -> usize) -> usize {
    let deadline = tokio::time::Instant::now() + POLL_BOUND;
    loop {
        let now = count();
        if now == expected || tokio::time::Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `done` until it holds, for at most [`POLL_BOUND`], then panics naming `what`: for a
/// state that nothing announces (a server's client list, a breaker's probe).
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + POLL_BOUND;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {POLL_BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh directory under the system's temp dir, unique to this process and call, removed
/// when dropped (cluster config files, sentinel configs, certificates).
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(kind: &str) -> ScratchDir {
        static DIRS: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "redis-cache-{kind}-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create a scratch directory");
        ScratchDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The path as a string, for command-line arguments.
    pub fn as_str(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// The working directory of the server on `port` started by this process: where a replica
/// writes the RDB it receives (even with `--save ""`), so it is a scratch directory of its own,
/// never the checkout. Removed when the server is dropped.
pub fn scratch_dir(port: u16) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("redis-cache-tests-{}-{port}", std::process::id()))
}

/// Spawns the server and waits for its readiness line; on failure returns what it printed.
fn spawn(port: u16, extra: &[String]) -> Result<Child, String> {
    let dir = scratch_dir(port);
    std::fs::create_dir_all(&dir).map_err(|err| format!("create {}: {err}", dir.display()))?;
    let mut args: Vec<String> = [
        "--dir",
        &dir.display().to_string(),
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "yes",
        "--loglevel",
        "notice",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().cloned());
    spawn_until(&args, "Ready to accept connections")
}

/// Spawns `redis-server args...` and waits until it prints a line containing `ready`.
fn spawn_until(args: &[String], ready: &str) -> Result<Child, String> {
    let mut child = Command::new("redis-server")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|err| format!("spawn redis-server (is it on PATH?): {err}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.map_err(|e| e.to_string())?;
        if line.contains(ready) {
            // Keep draining the pipe in the background so the server never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return Ok(child);
        }
        seen.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(seen.join("\n"))
}
