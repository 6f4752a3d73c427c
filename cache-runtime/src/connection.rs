//! Talking to Redis: connecting lazily, deadlines on every command, the circuit breaker's
//! verdicts, and reconnecting when its probe finds no connection.
//!
//! The flow only sees [`Connection::get`] and [`Connection::set`] and a [`StoreError`]; which kind
//! of server sits behind them ([`Target`], [`Link`]) is this module's business, so a cluster or
//! sentinel deployment is one more variant here, not a change to the flow.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Cmd, FromRedisValue, RedisError};

use crate::breaker::{Allow, Breaker, BreakerSettings};
use crate::health::RedisHealth;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub command: Duration,
}

/// Why a command gave no answer.
#[derive(Debug)]
pub(crate) enum StoreError {
    /// No connection, and the last attempt failed too recently to try again.
    Unavailable,
    /// The deadline passed.
    Timeout,
    /// The key holds another type (a hash, a list...): for the cache, an unreadable entry.
    WrongType,
    Redis(RedisError),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Unavailable => f.write_str("redis unavailable (waiting to reconnect)"),
            StoreError::Timeout => f.write_str("redis command timed out"),
            StoreError::WrongType => f.write_str("key holds a value of another type"),
            StoreError::Redis(err) => write!(f, "redis error: {err}"),
        }
    }
}

/// Why a live Redis refuses the cache's commands; each is logged once, with what to do.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    OutOfMemory,
    ReadOnly,
    Auth,
}

impl Refusal {
    fn from_code(code: &str) -> Option<Refusal> {
        match code {
            "OOM" => Some(Refusal::OutOfMemory),
            "READONLY" => Some(Refusal::ReadOnly),
            "NOAUTH" | "WRONGPASS" | "NOPERM" => Some(Refusal::Auth),
            _ => None,
        }
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
                 run uncached. Check the user and password in the URL and the user's ACL"
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

/// What to connect to.
enum Target {
    Standalone(redis::Client),
}

/// An established connection; cloning it shares the underlying socket.
#[derive(Clone)]
enum Link {
    Standalone(MultiplexedConnection),
}

impl Link {
    async fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> Result<T, RedisError> {
        match self {
            Link::Standalone(conn) => cmd.query_async(conn).await,
        }
    }
}

struct State {
    /// The live link and its generation, so a failure only discards the link it happened on.
    link: Option<(Link, u64)>,
    generation: u64,
    /// Connection attempts made: a caller that waited for another's attempt does not repeat it.
    attempts: u64,
}

pub(crate) struct Connection {
    target: Target,
    timeouts: Timeouts,
    breaker: Breaker,
    /// Refusals already logged (bits of [`Refusal`]), re-armed by a successful write.
    refusals_logged: AtomicU8,
    state: Mutex<State>,
    /// One connection attempt at a time; the others wait for its outcome.
    connecting: tokio::sync::Mutex<()>,
}

impl Connection {
    /// A connection for the cache with key prefix `cache` (which names it in logs).
    pub(crate) fn new(
        client: redis::Client,
        timeouts: Timeouts,
        breaker: BreakerSettings,
        cache: &str,
    ) -> Self {
        Connection {
            target: Target::Standalone(client),
            timeouts,
            breaker: Breaker::new(breaker, cache.to_string()),
            refusals_logged: AtomicU8::new(0),
            state: Mutex::new(State {
                link: None,
                generation: 0,
                attempts: 0,
            }),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// `GET key`: `Ok(None)` when absent.
    pub(crate) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        // While the breaker is open, a call does not even build the command.
        if self.breaker.allow() == Allow::Skip {
            return Err(StoreError::Unavailable);
        }
        self.run_allowed(redis::cmd("GET").arg(key)).await
    }

    /// `SET key value PX ttl`.
    pub(crate) async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.run(
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(millis(ttl)),
        )
        .await
    }

    /// One `SCAN` step: the next cursor (0 at the end) and the keys matching `pattern`.
    pub(crate) async fn scan(
        &self,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> Result<(u64, Vec<String>), StoreError> {
        self.run(
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(count),
        )
        .await
    }

    /// `UNLINK keys...`: deletes them (freeing memory off the main thread); how many existed.
    pub(crate) async fn unlink(&self, keys: &[String]) -> Result<u64, StoreError> {
        self.run(redis::cmd("UNLINK").arg(keys)).await
    }

    /// Runs a Lua script: by hash, and by source the first time a server does not know it.
    pub(crate) async fn eval<T: FromRedisValue>(
        &self,
        lua: &Lua,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<T, StoreError> {
        let command = |verb: &str, script: &str| {
            let mut cmd = redis::cmd(verb);
            cmd.arg(script).arg(keys.len()).arg(keys).arg(args);
            cmd
        };
        match self.run(&command("EVALSHA", lua.hash())).await {
            Err(StoreError::Redis(err)) if err.code() == Some("NOSCRIPT") => {
                self.run(&command("EVAL", lua.source)).await
            }
            other => other,
        }
    }

    /// The client, for connections of another kind (pub/sub) to the same server.
    pub(crate) fn client(&self) -> &redis::Client {
        match &self.target {
            Target::Standalone(client) => client,
        }
    }

    pub(crate) fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    pub(crate) fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Runs one command within the connect and command deadlines, unless the breaker is open.
    async fn run<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        if self.breaker.allow() == Allow::Skip {
            return Err(StoreError::Unavailable);
        }
        self.run_allowed(cmd).await
    }

    /// [`Connection::run`] once the breaker has let the command through.
    async fn run_allowed<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        let (mut link, generation) = self.link().await?;
        // The command deadline is the connection's response timeout (set when it was opened):
        // one timer per command, covering the send and the reply.
        match link.query(cmd).await {
            Ok(value) => {
                self.breaker.success();
                Ok(value)
            }
            Err(err) if err.is_timeout() => {
                self.breaker.failure(&"command timed out");
                Err(StoreError::Timeout)
            }
            Err(err) => {
                if err.is_unrecoverable_error() || err.is_connection_dropped() || err.is_io_error()
                {
                    self.breaker.failure(&err);
                    self.discard(generation);
                } else {
                    // An error reply: the server is alive and answering.
                    self.breaker.success();
                    self.log_refusal(&err);
                }
                if err.code() == Some("WRONGTYPE") {
                    return Err(StoreError::WrongType);
                }
                Err(StoreError::Redis(err))
            }
        }
    }

    /// Logs, once until a write succeeds again, why Redis refuses the cache's commands.
    fn log_refusal(&self, err: &RedisError) {
        let Some(refusal) = err.code().and_then(Refusal::from_code) else {
            return;
        };
        let bit = 1 << refusal as u8;
        if self.refusals_logged.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
            tracing::warn!(code = err.code(), "redis_cache: {}", refusal.explain());
        }
    }

    /// A write went through: refusals are logged again if they come back.
    pub(crate) fn write_succeeded(&self) {
        if self.refusals_logged.load(Ordering::Relaxed) != 0 {
            self.refusals_logged.store(0, Ordering::Relaxed);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live link, connecting first if there is none. A failed attempt trips the breaker,
    /// whose probes then make the next attempts.
    async fn link(&self) -> Result<(Link, u64), StoreError> {
        let seen = {
            let state = self.lock();
            if let Some(found) = &state.link {
                return Ok(found.clone());
            }
            state.attempts
        };
        // Boxed: the connecting future is large, and every command's future would carry it.
        Box::pin(self.connect(seen)).await
    }

    /// Connects, unless another caller is doing so (then waits for its outcome); `seen` is the
    /// number of attempts made when the caller found no link.
    async fn connect(&self, seen: u64) -> Result<(Link, u64), StoreError> {
        // One deadline for waiting on another caller's attempt and for our own: a call never
        // spends more than the connect timeout on connecting.
        let deadline = tokio::time::Instant::now() + self.timeouts.connect;
        let _gate = tokio::time::timeout_at(deadline, self.connecting.lock())
            .await
            .map_err(|_| StoreError::Timeout)?;
        {
            let state = self.lock();
            if let Some(found) = &state.link {
                return Ok(found.clone());
            }
            if state.attempts != seen {
                // Someone tried while we waited, and failed: do not repeat it at once.
                return Err(StoreError::Unavailable);
            }
        }
        let attempt = match &self.target {
            Target::Standalone(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeouts.connect))
                    .set_response_timeout(Some(self.timeouts.command));
                tokio::time::timeout_at(
                    deadline,
                    client.get_multiplexed_async_connection_with_config(&config),
                )
                .await
                .map(|r| r.map(Link::Standalone))
            }
        };
        let connected = {
            let mut state = self.lock();
            state.attempts += 1;
            match attempt {
                Ok(Ok(link)) => {
                    state.generation += 1;
                    state.link = Some((link.clone(), state.generation));
                    Ok((link, state.generation))
                }
                Ok(Err(err)) => Err(StoreError::Redis(err)),
                Err(_elapsed) => Err(StoreError::Timeout),
            }
        };
        match connected {
            Ok((mut link, generation)) => {
                if generation == 1 {
                    self.log_health(&mut link).await;
                }
                Ok((link, generation))
            }
            Err(StoreError::Redis(err)) => {
                self.breaker.trip(&err);
                Err(StoreError::Redis(err))
            }
            Err(err) => {
                self.breaker.trip(&format_args!(
                    "no connection within {:?}",
                    self.timeouts.connect
                ));
                Err(err)
            }
        }
    }

    /// `INFO`, read into what operators need to know.
    pub(crate) async fn health(&self) -> Result<RedisHealth, StoreError> {
        let info: String = self.run(&redis::cmd("INFO")).await?;
        Ok(RedisHealth::parse(&info))
    }

    /// The start-up check, once per cache: memory, eviction policy, and what to fix.
    async fn log_health(&self, link: &mut Link) {
        let cmd = redis::cmd("INFO");
        let info = tokio::time::timeout(self.timeouts.command, link.query::<String>(&cmd));
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

    /// Forgets a broken link (if it is still the current one); the next call reconnects.
    fn discard(&self, generation: u64) {
        let mut state = self.lock();
        if state.link.as_ref().is_some_and(|(_, g)| *g == generation) {
            state.link = None;
            tracing::debug!("redis_cache: connection lost; reconnecting on next call");
        }
    }
}
