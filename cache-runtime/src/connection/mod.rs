//! Talking to Redis: connecting lazily, deadlines on every command, the circuit breakers'
//! verdicts, and reconnecting when a probe finds no connection.
//!
//! The flow only sees [`Connection::get`] and [`Connection::set`] and a [`CommandError`]; which kind
//! of deployment sits behind them (one server, a cluster, Sentinel: [`deployment`], [`cluster`])
//! is not its business. [`server`] is one server's link and breaker, [`lazy`] connecting on first
//! use, [`refusal`] the refused commands and what to do about them, [`script`] the Lua scripts.
//!
//! # Connection budget
//!
//! Each [`Cache`](crate::Cache) opens, at most:
//! - one multiplexed command connection (a cluster: one per primary), shared by every call of
//!   every function;
//! - one pub/sub connection, from the first time a call waits on another process's lock;
//! - one more command connection to the reader endpoint, when one is configured;
//! - with a local tier (a function with `local = N`), one RESP3 connection per primary for its
//!   invalidation channel (`crate::local`);
//! - with Sentinel, one connection to each sentinel asked for the primary, kept for the next
//!   failover;
//! - on a cluster, a short-lived connection to a configured node when no primary it knows can
//!   say where the slots are (at start, or when all of them failed).
//!
//! Calls never open connections of their own, so the count does not grow with load.

mod catch_up;
mod cluster;
mod deployment;
mod endpoints;
mod lazy;
mod many;
mod pipelining;
pub(crate) mod refusal;
mod script;
mod server;

use std::sync::Arc;
use std::time::Duration;

use redis::{Cmd, FromRedisValue, RedisError};

use crate::breaker::{Allow, BreakerSettings, BreakerStats};
use crate::health::RedisHealth;
use cluster::Cluster;
use deployment::Deployment;
pub(crate) use deployment::Node;
#[cfg(feature = "tls")]
pub(crate) use endpoints::TlsFiles;
pub(crate) use endpoints::{Endpoints, Servers, redact, with_scheme};
pub(crate) use lazy::{LazyLink, Linked, Unlinked};
pub(crate) use many::{Answers, KeyedCmd};
pub(crate) use script::Lua;
use server::Server;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub command: Duration,
}

/// Why a command gave no answer.
#[derive(Debug, Clone)]
pub(crate) enum CommandError {
    /// No connection, and the last attempt failed too recently to try again.
    Unavailable,
    /// The deadline passed.
    Timeout,
    /// The key holds another type (a hash, a list...): for the cache, an unreadable entry.
    WrongType,
    /// A reply of another shape than the command's (anything read from Redis is untrusted).
    Malformed,
    Redis(RedisError),
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::Unavailable => f.write_str("redis unavailable (waiting to reconnect)"),
            CommandError::Timeout => f.write_str("redis command timed out"),
            CommandError::WrongType => f.write_str("key holds a value of another type"),
            CommandError::Malformed => f.write_str("redis replied with an unexpected shape"),
            CommandError::Redis(err) => write!(f, "redis error: {err}"),
        }
    }
}

/// A duration as Redis's `PX` milliseconds: at least 1 (0 is an error to Redis), saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

pub(crate) struct Connection {
    /// How commands reach the servers.
    route: Route,
    /// The replica endpoint lookups go to, if configured: a connection of its own, with its
    /// own breaker.
    reader: Option<Box<Connection>>,
    /// The keys this process just changed, read from the primary until the replicas caught up.
    catch_up: catch_up::CatchUp,
    timeouts: Timeouts,
    /// Lookups made at the same time share a pipeline ([`pipelining`]).
    auto_pipeline: bool,
}

// One per cache: the single server inline saves an indirection on each of its commands.
#[allow(clippy::large_enum_variant)]
enum Route {
    /// One server, or the primary Sentinel names: one link, one breaker.
    Direct(Server),
    /// A Redis Cluster: each key's commands go to the primary serving its slot, each primary
    /// with its own link and breaker.
    Cluster(Arc<Cluster>),
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
        let deployment = Deployment::open(endpoints)?;
        let address = endpoints.describe();
        let route = match deployment {
            Deployment::Cluster { .. } => Route::Cluster(Arc::new(Cluster::new(
                deployment, address, timeouts, breaker, cache,
            ))),
            deployment => Route::Direct(Server::new(
                deployment, address, timeouts, breaker, cache, true,
            )),
        };
        Ok(Connection {
            route,
            reader,
            catch_up: catch_up::CatchUp::default(),
            timeouts,
            auto_pipeline: true,
        })
    }

    /// Whether lookups made at the same time share a pipeline (on unless this says otherwise;
    /// see [`CacheBuilder::auto_pipeline`](crate::CacheBuilder::auto_pipeline)).
    pub(crate) fn with_auto_pipeline(mut self, on: bool) -> Self {
        self.auto_pipeline = on;
        self.reader = self
            .reader
            .map(|reader| Box::new(reader.with_auto_pipeline(on)));
        self
    }

    /// `GET key`: `Ok(None)` when absent. Sent to the reader endpoint when there is one, its
    /// breaker is closed, and this process did not change the key a moment ago.
    pub(crate) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CommandError> {
        if let Some(reader) = &self.reader
            && self.catch_up.settled([key])
            && let Route::Direct(server) = &reader.route
            && server.breaker().allow() != Allow::Skip
        {
            return match reader.auto_pipeline {
                true => server.get_allowed(key).await,
                false => server.run_allowed(redis::cmd("GET").arg(key)).await,
            };
        }
        match &self.route {
            Route::Direct(server) if self.auto_pipeline => match server.breaker().allow() {
                Allow::Skip => Err(CommandError::Unavailable),
                Allow::Go => server.get_allowed(key).await,
            },
            // Boxed, as every cluster command is.
            Route::Cluster(cluster) if self.auto_pipeline => Box::pin(cluster.get(key)).await,
            _ => self.run(key.as_bytes(), redis::cmd("GET").arg(key)).await,
        }
    }

    /// `keys` were just changed by this process (invalidated, refreshed): with a reader endpoint,
    /// they are read from the primary until the replicas caught up.
    pub(crate) fn changed<'k>(&self, keys: impl IntoIterator<Item = &'k str>) {
        if self.reader.is_some() {
            self.catch_up.changed(keys);
        }
    }

    /// Every key may just have changed (a clear).
    pub(crate) fn changed_all(&self) {
        if self.reader.is_some() {
            self.catch_up.changed_all();
        }
    }

    /// `SET key value PX ttl`.
    pub(crate) async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), CommandError> {
        self.run(
            key.as_bytes(),
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(millis(ttl)),
        )
        .await
    }

    /// The primaries holding the keyspace: [`Node::Any`] for one server, each primary of a
    /// cluster (from a slot map read now).
    pub(crate) async fn primaries(&self) -> Result<Vec<Node>, CommandError> {
        match &self.route {
            Route::Direct(_) => Ok(vec![Node::Any]),
            Route::Cluster(cluster) => cluster.primaries().await,
        }
    }

    /// One `SCAN` step on `node`: the next cursor (0 at the end) and the keys matching
    /// `pattern`, as bytes (a key under the prefix need not be UTF-8: anyone can write one).
    pub(crate) async fn scan(
        &self,
        node: &Node,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> Result<(u64, Vec<Vec<u8>>), CommandError> {
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
    /// cluster deletes each slot's keys with a command of their own.
    pub(crate) async fn unlink<K>(&self, keys: &[K]) -> Result<u64, CommandError>
    where
        K: AsRef<[u8]> + redis::ToRedisArgs + Sync,
    {
        if keys.is_empty() {
            return Ok(0);
        }
        match &self.route {
            Route::Direct(server) => server.run(redis::cmd("UNLINK").arg(keys)).await,
            Route::Cluster(cluster) => cluster.unlink(keys).await,
        }
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
        let first = keys.first().map_or(&b""[..], |k| k.as_bytes());
        match self.run(first, &command("EVALSHA", lua.hash())).await {
            Err(CommandError::Redis(err)) if err.code() == Some("NOSCRIPT") => {
                self.run(first, &command("EVAL", lua.source)).await
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
        let deployment = match &self.route {
            Route::Direct(server) => {
                let _: String = server.run(&redis::cmd("PING")).await?;
                server.deployment()
            }
            Route::Cluster(cluster) => cluster.deployment(),
        };
        deployment
            .tracking_clients(&primaries)
            .map_err(CommandError::Redis)
    }

    /// Clients for the pub/sub connection, to try in order: the server, the configured nodes of
    /// a cluster, or the primary the sentinels named last.
    pub(crate) fn pubsub_clients(&self) -> Vec<redis::Client> {
        match &self.route {
            Route::Direct(server) => server.deployment().pubsub_clients(),
            Route::Cluster(cluster) => cluster.deployment().pubsub_clients(),
        }
    }

    pub(crate) fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Every breaker of this connection and of the reader's, by what it guards: the server's
    /// (its URL without password); on a cluster, the slot map's (the configured nodes) and each
    /// primary's (`host:port`).
    pub(crate) fn breakers(&self) -> Vec<(String, BreakerStats)> {
        let mut all = match &self.route {
            Route::Direct(server) => {
                let breaker = server.breaker();
                vec![(breaker.address().to_string(), breaker.stats())]
            }
            Route::Cluster(cluster) => cluster.breakers(),
        };
        if let Some(reader) = &self.reader {
            all.extend(reader.breakers());
        }
        all
    }

    /// The breakers summed up: open while the server's is (on a cluster, the slot map's or a
    /// current primary's), with the openings and closings of every breaker the connection ever
    /// had (a cluster's primaries come and go). The reader's is listed by
    /// [`Connection::breakers`] only: while it is open, lookups go to the primary.
    pub(crate) fn breaker_totals(&self) -> BreakerStats {
        match &self.route {
            Route::Direct(server) => server.breaker().stats(),
            Route::Cluster(cluster) => cluster.breaker_totals(),
        }
    }

    /// A write went through: refusals are logged again if they come back.
    pub(crate) fn write_succeeded(&self) {
        match &self.route {
            Route::Direct(server) => server.write_succeeded(),
            Route::Cluster(cluster) => cluster.write_succeeded(),
        }
    }

    /// `INFO` (of one primary, on a cluster), read into what operators need to know.
    pub(crate) async fn health(&self) -> Result<RedisHealth, CommandError> {
        let info: String = self.run_on(&redis::cmd("INFO"), &Node::Any).await?;
        Ok(RedisHealth::parse(&info))
    }

    /// Runs one command about `key` within the connect and command deadlines, unless a breaker
    /// is open: the server's, or on a cluster the one of the primary serving the key's slot.
    async fn run<T: FromRedisValue>(&self, key: &[u8], cmd: &Cmd) -> Result<T, CommandError> {
        match &self.route {
            Route::Direct(server) => server.run(cmd).await,
            // Boxed: inline, the routing would grow every call's future, a single server's
            // too; one allocation is nothing next to a round trip.
            Route::Cluster(cluster) => Box::pin(cluster.run(key, cmd)).await,
        }
    }

    /// [`Connection::run`] for a command that is not about a key, on one node.
    async fn run_on<T: FromRedisValue>(&self, cmd: &Cmd, node: &Node) -> Result<T, CommandError> {
        match &self.route {
            Route::Direct(server) => server.run(cmd).await,
            Route::Cluster(cluster) => cluster.run_on(cmd, node).await,
        }
    }
}
