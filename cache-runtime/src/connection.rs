//! Talking to Redis: connecting lazily, deadlines on every command, and reconnecting with backoff.
//!
//! The flow only sees [`Connection::get`] and [`Connection::set`] and a [`StoreError`]; which kind
//! of server sits behind them ([`Target`], [`Link`]) is this module's business, so a cluster or
//! sentinel deployment is one more variant here, not a change to the flow.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Cmd, FromRedisValue, RedisError};

#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub command: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
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
    /// Failed connection attempts in a row.
    failures: u32,
    /// No new attempt before this instant.
    retry_at: Option<Instant>,
}

pub(crate) struct Connection {
    target: Target,
    timeouts: Timeouts,
    state: Mutex<State>,
    /// One connection attempt at a time; the others wait for its outcome.
    connecting: tokio::sync::Mutex<()>,
}

impl Connection {
    pub(crate) fn new(client: redis::Client, timeouts: Timeouts) -> Self {
        Connection {
            target: Target::Standalone(client),
            timeouts,
            state: Mutex::new(State {
                link: None,
                generation: 0,
                failures: 0,
                retry_at: None,
            }),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// `GET key`: `Ok(None)` when absent.
    pub(crate) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.run(redis::cmd("GET").arg(key)).await
    }

    /// `SET key value PX ttl`.
    pub(crate) async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.run(redis::cmd("SET").arg(key).arg(value).arg("PX").arg(millis))
            .await
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

    /// Runs one command within the connect and command deadlines.
    async fn run<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        let (mut link, generation) = self.link().await?;
        match tokio::time::timeout(self.timeouts.command, link.query(cmd)).await {
            Err(_elapsed) => Err(StoreError::Timeout),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) if err.code() == Some("WRONGTYPE") => Err(StoreError::WrongType),
            Ok(Err(err)) => {
                if err.is_unrecoverable_error() || err.is_connection_dropped() || err.is_io_error()
                {
                    self.discard(generation);
                }
                Err(StoreError::Redis(err))
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live link, connecting first if there is none and the backoff allows it.
    async fn link(&self) -> Result<(Link, u64), StoreError> {
        if let Some(found) = self.ready()? {
            return Ok(found);
        }
        // One deadline for waiting on another caller's attempt and for our own: a call never
        // spends more than the connect timeout on connecting.
        let deadline = tokio::time::Instant::now() + self.timeouts.connect;
        let _gate = tokio::time::timeout_at(deadline, self.connecting.lock())
            .await
            .map_err(|_| StoreError::Timeout)?;
        // Whoever held the gate before us may have connected, or failed and set a backoff.
        if let Some(found) = self.ready()? {
            return Ok(found);
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
        let mut state = self.lock();
        match attempt {
            Ok(Ok(link)) => {
                if state.failures > 0 {
                    tracing::info!("redis_cache: connected to Redis again; caching resumes");
                }
                state.failures = 0;
                state.retry_at = None;
                state.generation += 1;
                state.link = Some((link.clone(), state.generation));
                Ok((link, state.generation))
            }
            Ok(Err(_)) | Err(_) => {
                if state.failures == 0 {
                    let why = match &attempt {
                        Ok(Err(err)) => err.to_string(),
                        _ => format!("no connection within {:?}", self.timeouts.connect),
                    };
                    tracing::warn!(error = %why, "redis_cache: cannot reach Redis; calls run uncached until it answers");
                }
                state.failures = state.failures.saturating_add(1);
                let backoff = self
                    .timeouts
                    .reconnect_min
                    .saturating_mul(1 << (state.failures - 1).min(16))
                    .min(self.timeouts.reconnect_max);
                state.retry_at = Some(Instant::now() + backoff);
                match attempt {
                    Ok(Err(err)) => Err(StoreError::Redis(err)),
                    _ => Err(StoreError::Timeout),
                }
            }
        }
    }

    /// `Ok(Some)` with a live link, `Ok(None)` when a connection attempt is due,
    /// `Err(Unavailable)` while backing off.
    fn ready(&self) -> Result<Option<(Link, u64)>, StoreError> {
        let state = self.lock();
        if let Some(found) = &state.link {
            return Ok(Some(found.clone()));
        }
        match state.retry_at {
            Some(at) if Instant::now() < at => Err(StoreError::Unavailable),
            _ => Ok(None),
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
