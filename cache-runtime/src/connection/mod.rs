//! Talking to Redis: connecting lazily, deadlines on every command, the circuit breaker's
//! verdicts, and reconnecting when its probe finds no connection.
//!
//! The flow only sees [`Connection::get`] and [`Connection::set`] and a [`CommandError`]; which kind
//! of deployment sits behind them (one server, a cluster, Sentinel: [`target`]) is not its
//! business.
//!
//! # Connection budget
//!
//! Each [`Cache`](crate::Cache) opens, at most:
//! - one multiplexed command connection (a cluster: one per primary, from redis-rs's cluster
//!   connection), shared by every call of every function;
//! - one pub/sub connection, from the first time a call waits on another process's lock;
//! - one more command connection to the reader endpoint, when one is configured;
//! - with a local tier (a function with `local = N`), one RESP3 connection per primary for its
//!   invalidation channel (`crate::local`);
//! - with Sentinel, one connection to each sentinel asked for the primary, kept for the next
//!   failover.
//!
//! Calls never open connections of their own, so the count does not grow with load.

mod endpoints;
mod lazy;
mod target;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use redis::{Cmd, FromRedisValue, RedisError};

use crate::breaker::{Allow, Breaker, BreakerSettings};
use crate::health::RedisHealth;
#[cfg(feature = "tls")]
pub(crate) use endpoints::TlsFiles;
pub(crate) use endpoints::{Endpoints, Servers, redact, with_scheme};
pub(crate) use lazy::{LazyLink, Linked, Unlinked};
pub(crate) use target::Node;
use target::{Link, Target};

#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub command: Duration,
}

/// Why a command gave no answer.
#[derive(Debug)]
pub(crate) enum CommandError {
    /// No connection, and the last attempt failed too recently to try again.
    Unavailable,
    /// The deadline passed.
    Timeout,
    /// The key holds another type (a hash, a list...): for the cache, an unreadable entry.
    WrongType,
    Redis(RedisError),
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::Unavailable => f.write_str("redis unavailable (waiting to reconnect)"),
            CommandError::Timeout => f.write_str("redis command timed out"),
            CommandError::WrongType => f.write_str("key holds a value of another type"),
            CommandError::Redis(err) => write!(f, "redis error: {err}"),
        }
    }
}

/// Why a live Redis refuses the cache's commands; each is logged once, with what to do.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    OutOfMemory,
    ReadOnly,
    Auth,
    Tls,
}

impl Refusal {
    fn of(err: &RedisError) -> Option<Refusal> {
        match err.code() {
            Some("OOM") => return Some(Refusal::OutOfMemory),
            Some("READONLY") => return Some(Refusal::ReadOnly),
            Some("NOAUTH" | "WRONGPASS" | "NOPERM") => return Some(Refusal::Auth),
            _ => {}
        }
        if err.kind() == redis::ErrorKind::AuthenticationFailed {
            return Some(Refusal::Auth);
        }
        // rustls's verdicts reach us as I/O errors; their text is all there is to go by.
        let text = err.to_string();
        (text.contains("certificate") || text.contains("TLS") || text.contains("tls"))
            .then_some(Refusal::Tls)
    }

    fn explain(self) -> &'static str {
        match self {
            Refusal::OutOfMemory => {
                "Redis refuses writes: maxmemory is reached and the eviction policy does not evict \
                 (noeviction); values are not cached until memory frees up. For a cache, set \
                 maxmemory-policy to allkeys-lru or allkeys-lfu"
            }
            Refusal::ReadOnly => {
                "Redis refuses writes: this is a read-only replica; values are not cached. Point \
                 the cache at the primary"
            }
            Refusal::Auth => {
                "Redis refuses the cache's commands (authentication or ACL permissions); calls \
                 run uncached. Check the user and password (URL, REDIS_USERNAME/REDIS_PASSWORD \
                 or `credentials`) and that the user's ACL allows the cache's prefix (~prefix:*), \
                 its lock channels (&prefix:*) and EVALSHA, EVAL, GET, SET, SCAN, UNLINK, \
                 SUBSCRIBE, INFO"
            }
            Refusal::Tls => {
                "The TLS handshake with Redis failed; calls run uncached. Check that the CA \
                 (REDIS_TLS_CA_FILE or `tls_ca_pem`) signed the server's certificate, that the \
                 certificate names the host in the URL, and the client certificate if the \
                 server asks for one"
            }
        }
    }
}

/// A duration as Redis's `PX` milliseconds: at least 1 (0 is an error to Redis), saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// A Lua script the cache runs atomically on the server.
pub(crate) struct Lua {
    source: &'static str,
    hash: OnceLock<String>,
}

impl Lua {
    pub(crate) const fn new(source: &'static str) -> Self {
        Lua {
            source,
            hash: OnceLock::new(),
        }
    }

    fn hash(&self) -> &str {
        self.hash
            .get_or_init(|| redis::Script::new(self.source).get_hash().to_string())
    }
}

pub(crate) struct Connection {
    target: Target,
    /// The replica endpoint lookups go to, if configured: a connection of its own, with its
    /// own breaker.
    reader: Option<Box<Connection>>,
    timeouts: Timeouts,
    breaker: Breaker,
    /// Refusals already logged (bits of [`Refusal`]), re-armed by a successful write.
    refusals_logged: AtomicU8,
    /// Connected at the first command; numbered, so a failure only discards the link it
    /// happened on. No backoff of its own: the breaker decides when to try again.
    link: LazyLink<Link>,
}

impl Connection {
    /// A connection for the cache with key prefix `cache` (which names it in logs). Nothing
    /// connects yet; the error is a configuration problem, with no secret in it.
    pub(crate) fn open(
        endpoints: &Endpoints,
        timeouts: Timeouts,
        breaker: BreakerSettings,
        cache: &str,
    ) -> Result<Self, String> {
        let reader = match &endpoints.reader {
            Some(url) => {
                let endpoints = Endpoints {
                    servers: Servers::Single(url.clone()),
                    reader: None,
                    ..endpoints.clone()
                };
                let name = format!("{cache} (reader)");
                Some(Box::new(Connection::open(
                    &endpoints, timeouts, breaker, &name,
                )?))
            }
            None => None,
        };
        Ok(Connection {
            target: Target::open(endpoints, &timeouts)?,
            reader,
            timeouts,
            breaker: Breaker::new(breaker, cache.to_string(), endpoints.describe()),
            refusals_logged: AtomicU8::new(0),
            link: LazyLink::new(Duration::ZERO),
        })
    }

    /// `GET key`: `Ok(None)` when absent. Sent to the reader endpoint when there is one and its
    /// breaker is closed.
    pub(crate) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CommandError> {
        if let Some(reader) = &self.reader
            && reader.breaker.allow() != Allow::Skip
        {
            return reader.run_allowed(redis::cmd("GET").arg(key)).await;
        }
        // While the breaker is open, a call does not even build the command.
        if self.breaker.allow() == Allow::Skip {
            return Err(CommandError::Unavailable);
        }
        self.run_allowed(redis::cmd("GET").arg(key)).await
    }

    /// `SET key value PX ttl`.
    pub(crate) async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), CommandError> {
        self.run(
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(millis(ttl)),
        )
        .await
    }

    /// The primaries holding the keyspace: [`Node::Any`] for one server, each primary of a
    /// cluster.
    pub(crate) async fn primaries(&self) -> Result<Vec<Node>, CommandError> {
        if self.breaker.allow() == Allow::Skip {
            return Err(CommandError::Unavailable);
        }
        let (mut link, generation) = self.link().await?;
        let primaries = link.primaries().await;
        self.judge(primaries, generation)
    }

    /// One `SCAN` step on `node`: the next cursor (0 at the end) and the keys matching
    /// `pattern`.
    pub(crate) async fn scan(
        &self,
        node: &Node,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> Result<(u64, Vec<String>), CommandError> {
        let cmd = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count)
            .to_owned();
        self.run_on(&cmd, node).await
    }

    /// `UNLINK keys...`: deletes them (freeing memory off the main thread); how many existed. A
    /// cluster splits the command by slot.
    pub(crate) async fn unlink(&self, keys: &[String]) -> Result<u64, CommandError> {
        self.run(redis::cmd("UNLINK").arg(keys)).await
    }

    /// Runs a Lua script: by hash, and by source the first time a server does not know it.
    pub(crate) async fn eval<T: FromRedisValue>(
        &self,
        lua: &Lua,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<T, CommandError> {
        let command = |verb: &str, script: &str| {
            let mut cmd = redis::cmd(verb);
            cmd.arg(script).arg(keys.len()).arg(keys).arg(args);
            cmd
        };
        match self.run(&command("EVALSHA", lua.hash())).await {
            Err(CommandError::Redis(err)) if err.code() == Some("NOSCRIPT") => {
                self.run(&command("EVAL", lua.source)).await
            }
            other => other,
        }
    }

    /// RESP3 clients for the local tier's invalidation channel, one per primary. The command
    /// connection finds the primaries: a cluster's from its slot map, otherwise the server it
    /// answers from, checked with a `PING` first (behind Sentinel, a failed one makes the next
    /// attempt ask the sentinels for the new primary).
    pub(crate) async fn tracking_clients(&self) -> Result<Vec<redis::Client>, CommandError> {
        let primaries = self.primaries().await?;
        if matches!(primaries.as_slice(), [Node::Any]) {
            let _: String = self.run(&redis::cmd("PING")).await?;
        }
        self.target
            .tracking_clients(&primaries)
            .map_err(CommandError::Redis)
    }

    /// Clients for the pub/sub connection, to try in order: the server, the configured nodes of
    /// a cluster, or the primary the sentinels named last.
    pub(crate) fn pubsub_clients(&self) -> Vec<redis::Client> {
        self.target.pubsub_clients()
    }

    pub(crate) fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    pub(crate) fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Runs one command within the connect and command deadlines, unless the breaker is open.
    async fn run<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, CommandError> {
        if self.breaker.allow() == Allow::Skip {
            return Err(CommandError::Unavailable);
        }
        self.run_allowed(cmd).await
    }

    /// [`Connection::run`] for a command that is not about a key, on one node.
    async fn run_on<T: FromRedisValue>(&self, cmd: &Cmd, node: &Node) -> Result<T, CommandError> {
        if self.breaker.allow() == Allow::Skip {
            return Err(CommandError::Unavailable);
        }
        let (mut link, generation) = self.link().await?;
        let reply = link.query_node(cmd, node).await;
        self.judge(reply, generation)
    }

    /// [`Connection::run`] once the breaker has let the command through.
    async fn run_allowed<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, CommandError> {
        let (mut link, generation) = self.link().await?;
        // The command deadline is the connection's response timeout (set when it was opened):
        // one timer per command, covering the send and the reply.
        let reply = link.query(cmd).await;
        self.judge(reply, generation)
    }

    /// What a reply tells the breaker and the link, and the caller.
    fn judge<T>(&self, reply: Result<T, RedisError>, generation: u64) -> Result<T, CommandError> {
        match reply {
            Ok(value) => {
                self.breaker.success();
                Ok(value)
            }
            Err(err) if err.is_timeout() => {
                self.breaker.failure(&"command timed out");
                self.rebuild_if_stuck(generation);
                Err(CommandError::Timeout)
            }
            Err(err) => {
                if err.is_unrecoverable_error() || err.is_connection_dropped() || err.is_io_error()
                {
                    self.breaker.failure(&err);
                    self.discard(generation);
                    self.rebuild_if_stuck(generation);
                } else {
                    // An error reply: the server is alive and answering.
                    self.breaker.success();
                    self.log_refusal(&err);
                    if err.code() == Some("READONLY") {
                        // A primary demoted by a failover (behind Sentinel, or a managed
                        // endpoint whose DNS name moved): reconnecting finds the new one.
                        self.discard(generation);
                    }
                }
                if err.code() == Some("WRONGTYPE") {
                    return Err(CommandError::WrongType);
                }
                Err(CommandError::Redis(err))
            }
        }
    }

    /// Logs, once until a write succeeds again, why Redis refuses the cache's commands.
    fn log_refusal(&self, err: &RedisError) {
        let Some(refusal) = Refusal::of(err) else {
            return;
        };
        let bit = 1 << refusal as u8;
        if self.refusals_logged.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
            tracing::warn!(code = err.code(), error = %err, "redis_cache: {}", refusal.explain());
        }
    }

    /// A write went through: refusals are logged again if they come back.
    pub(crate) fn write_succeeded(&self) {
        if self.refusals_logged.load(Ordering::Relaxed) != 0 {
            self.refusals_logged.store(0, Ordering::Relaxed);
        }
    }

    /// The live link, connecting first if there is none. A failed attempt trips the breaker,
    /// whose probes then make the next attempts. One deadline covers waiting for another
    /// caller's attempt and making our own: a call never spends more than the connect timeout
    /// on connecting.
    async fn link(&self) -> Result<(Link, u64), CommandError> {
        let deadline = tokio::time::Instant::now() + self.timeouts.connect;
        let connecting = |_generation| async move {
            match tokio::time::timeout_at(deadline, self.target.connect(&self.timeouts)).await {
                Ok(Ok(link)) => Ok(link),
                Ok(Err(err)) => Err(CommandError::Redis(err)),
                Err(_elapsed) => Err(CommandError::Timeout),
            }
        };
        match self.link.get(deadline, connecting).await {
            Ok(Linked {
                mut link,
                generation,
                fresh,
            }) => {
                if fresh && generation == 1 {
                    // Boxed: once per cache, and every command's future would carry it.
                    Box::pin(self.log_health(&mut link)).await;
                }
                Ok((link, generation))
            }
            Err(Unlinked::TimedOut) => Err(CommandError::Timeout),
            Err(Unlinked::Recently) => Err(CommandError::Unavailable),
            Err(Unlinked::Failed(CommandError::Redis(err))) => {
                self.breaker.trip(&err);
                // Wrong credentials or certificates do not heal by waiting: say what to fix.
                self.log_refusal(&err);
                Err(CommandError::Redis(err))
            }
            Err(Unlinked::Failed(err)) => {
                self.breaker.trip(&format_args!(
                    "no connection within {:?}",
                    self.timeouts.connect
                ));
                Err(err)
            }
        }
    }

    /// `INFO` (of one primary, on a cluster), read into what operators need to know.
    pub(crate) async fn health(&self) -> Result<RedisHealth, CommandError> {
        let info: String = self.run_on(&redis::cmd("INFO"), &Node::Any).await?;
        Ok(RedisHealth::parse(&info))
    }

    /// The start-up check, once per cache: memory, eviction policy, and what to fix.
    async fn log_health(&self, link: &mut Link) {
        let cmd = redis::cmd("INFO");
        let info = tokio::time::timeout(
            self.timeouts.command,
            link.query_node::<String>(&cmd, &Node::Any),
        );
        let health = match info.await {
            Ok(Ok(info)) => RedisHealth::parse(&info),
            // INFO may be renamed or forbidden on managed services: nothing to report then.
            _ => return,
        };
        tracing::info!(%health, "redis_cache: connected");
        for warning in health.warnings() {
            tracing::warn!(%health, "redis_cache: {warning}");
        }
    }

    /// Forgets a broken link (if it is still the current one); the next call reconnects. A
    /// cluster connection is kept: it reconnects nodes and refreshes its slot map by itself.
    fn discard(&self, generation: u64) {
        self.forget(generation, |link| !link.reconnects_itself());
    }

    /// A command failed while the breaker is open (a probe, or a call in flight when it opened):
    /// Redis has not answered through this link for a whole breaker interval. A link that
    /// reconnects by itself (a cluster connection) is dropped too, then: redis-rs's cluster
    /// connection can stay stuck after a failover, every request timing out against a cluster
    /// that is healthy again, and a new one finds the topology from the configured nodes.
    fn rebuild_if_stuck(&self, generation: u64) {
        if self.breaker.is_open() {
            self.forget(generation, |_| true);
        }
    }

    fn forget(&self, generation: u64, applies: impl Fn(&Link) -> bool) {
        if self.link.forget(generation, applies) {
            tracing::debug!("redis_cache: connection lost; reconnecting on next call");
        }
    }
}
