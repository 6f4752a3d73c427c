//! One server over one lazily connected, multiplexed link, behind its circuit breaker: a single
//! server, the primary Sentinel names, or one primary of a cluster ([`super::cluster`]).
//!
//! Every command has the command deadline (the link's response timeout); connecting has the
//! connect deadline, shared by the callers waiting for the same attempt. What a reply says goes
//! to the breaker ([`Server::judge`]): an answer closes it, a timeout or a dropped connection
//! counts toward opening it, a refused command is logged once with what to fix.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use redis::{Cmd, FromRedisValue, Pipeline, RedisError};

use super::deployment::{Deployment, Link};
use super::pipelining::{Joined, Lookups, Reply, Turn, Window};
use super::refusal::Refusal;
use super::{CommandError, LazyLink, Linked, Timeouts, Unlinked};
use crate::breaker::{Allow, Breaker, BreakerSettings};
use crate::health::RedisHealth;

pub(super) struct Server {
    deployment: Deployment,
    timeouts: Timeouts,
    breaker: Breaker,
    /// Refusals already logged (bits of [`Refusal`]), re-armed by a successful write.
    refusals_logged: AtomicU8,
    /// The first connection logs the server's health (a cluster's primaries leave it to the
    /// first one made).
    announce: AtomicBool,
    /// Connected at the first command; numbered, so a failure only discards the link it
    /// happened on. No backoff of its own: the breaker decides when to try again.
    link: LazyLink<Link>,
    /// Lookups in flight, and the window that concurrent ones share ([`super::pipelining`]).
    lookups: Lookups,
}

impl Server {
    /// `address` names the server in the breaker's logs and metrics (no password in it).
    pub(super) fn new(
        deployment: Deployment,
        address: String,
        timeouts: Timeouts,
        breaker: BreakerSettings,
        cache: &str,
        announce: bool,
    ) -> Self {
        Server {
            deployment,
            timeouts,
            breaker: Breaker::new(breaker, cache.to_string(), address),
            refusals_logged: AtomicU8::new(0),
            announce: AtomicBool::new(announce),
            link: LazyLink::new(Duration::ZERO),
            lookups: Lookups::default(),
        }
    }

    pub(super) fn deployment(&self) -> &Deployment {
        &self.deployment
    }

    pub(super) fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Runs one command, unless the breaker is open.
    pub(super) async fn run<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, CommandError> {
        // While the breaker is open, a call does not even connect.
        if self.breaker.allow() == Allow::Skip {
            return Err(CommandError::Unavailable);
        }
        self.run_allowed(cmd).await
    }

    /// [`Server::run`] once the breaker has let the command through.
    pub(super) async fn run_allowed<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
    ) -> Result<T, CommandError> {
        let (mut link, generation) = self.link().await?;
        // The command deadline is the connection's response timeout (set when it was opened):
        // one timer per command, covering the send and the reply.
        let reply = cmd.query_async(&mut link).await;
        self.judge(reply, generation)
    }

    /// `GET key`, once the breaker has let it through: pipelined with the lookups
    /// made at the same time ([`super::pipelining`]). A probe of an open breaker goes alone: its
    /// verdict is its own.
    pub(super) async fn get_allowed(&self, key: &str) -> Reply {
        let in_flight = match self.breaker.is_open() {
            true => None,
            false => match self.lookups.turn(key) {
                Turn::Alone(in_flight) => Some(in_flight),
                // The opener answers within its connect and command deadlines; a lookup never
                // waits longer than it would have alone (an opener whose task is held up, on a
                // worker some blocking code holds, cannot hold it up too).
                Turn::Join(reply) => {
                    match tokio::time::timeout(self.join_deadline(), reply).await {
                        Ok(Ok(reply)) => return reply,
                        // The window's opener was cancelled: this lookup goes alone.
                        Ok(Err(_)) => None,
                        Err(_) => return Err(CommandError::Timeout),
                    }
                }
                // Boxed, like every path but the lone lookup: one allocation per window, and
                // the future every call carries stays small.
                Turn::Open(window) => return Box::pin(self.open_window(key, window)).await,
            },
        };
        let reply = self.run_allowed(redis::cmd("GET").arg(key)).await;
        drop(in_flight);
        reply
    }

    /// The longest a lookup waits in another's window: what the opener may take to connect and
    /// send it.
    fn join_deadline(&self) -> Duration {
        self.timeouts.connect.saturating_add(self.timeouts.command)
    }

    /// The window `key`'s lookup opened: the rest of the scheduler's turn for others to join,
    /// then one pipeline for all of them.
    async fn open_window(&self, key: &str, window: Window<'_>) -> Reply {
        tokio::task::yield_now().await;
        let (joined, in_flight) = window.close();
        let reply = match joined.is_empty() {
            true => self.run_allowed(redis::cmd("GET").arg(key)).await,
            false => {
                tracing::trace!(lookups = joined.len() + 1, "redis_cache: lookups pipelined");
                self.get_window(key, joined).await
            }
        };
        drop(in_flight);
        reply
    }

    /// Sends `key`'s lookup and those of `joined` as one pipeline, hands each joiner its reply,
    /// and returns `key`'s.
    async fn get_window(&self, key: &str, joined: Vec<Joined>) -> Reply {
        let mut pipe = redis::pipe();
        pipe.ignore_errors().cmd("GET").arg(key);
        for lookup in &joined {
            pipe.cmd("GET").arg(&lookup.key);
        }
        let replies = match self.link().await {
            Ok((mut link, generation)) => {
                let replies = pipe
                    .query_async::<Vec<redis::RedisResult<Option<Vec<u8>>>>>(&mut link)
                    .await;
                self.judge(replies, generation)
                    .map(|replies| (replies, generation))
            }
            Err(err) => Err(err),
        };
        let (replies, generation) = match replies {
            Ok((replies, _)) if replies.len() != joined.len() + 1 => {
                // Untrusted: a reply per command, or none for anyone.
                for lookup in joined {
                    let _ = lookup.reply.send(Err(CommandError::Malformed));
                }
                return Err(CommandError::Malformed);
            }
            Ok(replies) => replies,
            Err(err) => {
                for lookup in joined {
                    let _ = lookup.reply.send(Err(err.clone()));
                }
                return Err(err);
            }
        };
        let mut replies = replies.into_iter().map(|reply| match reply {
            Ok(value) => Ok(value),
            // An error reply for one key (another type under it): that caller's alone.
            Err(err) => self.judge(Err(err), generation),
        });
        let own = replies.next().unwrap_or(Err(CommandError::Malformed));
        for (lookup, reply) in joined.into_iter().zip(replies) {
            // A joiner that was cancelled meanwhile no longer listens.
            let _ = lookup.reply.send(reply);
        }
        own
    }

    /// Sends a pipeline, through the breaker: one round trip.
    pub(super) async fn run_pipeline<T: FromRedisValue>(
        &self,
        pipe: &Pipeline,
    ) -> Result<T, CommandError> {
        if self.breaker.allow() == Allow::Skip {
            return Err(CommandError::Unavailable);
        }
        let (mut link, generation) = self.link().await?;
        let reply = pipe.query_async(&mut link).await;
        self.judge(reply, generation)
    }

    /// Runs `ASKING` and then `cmd` (a cluster primary to which the key's slot is being
    /// migrated, and the key has moved already).
    pub(super) async fn run_asking<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, CommandError> {
        let mut pipe = redis::pipe();
        pipe.cmd("ASKING").ignore().add_command(cmd.clone());
        let (value,): (T,) = self.run_pipeline(&pipe).await?;
        Ok(value)
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
                    self.forget(generation);
                } else {
                    // An error reply: the server is alive and answering.
                    self.breaker.success();
                    self.log_refusal(&err);
                    if err.code() == Some("READONLY") {
                        // A primary demoted by a failover (behind Sentinel, or a managed
                        // endpoint whose DNS name moved): reconnecting finds the new one.
                        self.forget(generation);
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
        Refusal::log_once(&self.refusals_logged, err);
    }

    /// A write went through: refusals are logged again if they come back.
    pub(super) fn write_succeeded(&self) {
        if self.refusals_logged.load(Ordering::Relaxed) != 0 {
            self.refusals_logged.store(0, Ordering::Relaxed);
        }
    }

    /// The live link, connecting first if there is none. A failed attempt trips the breaker,
    /// whose probes then make the next attempts. One deadline covers waiting for another
    /// caller's attempt and making our own: a call never spends more than the connect timeout
    /// on connecting.
    async fn link(&self) -> Result<(Link, u64), CommandError> {
        let connecting = |_generation, deadline| async move {
            match tokio::time::timeout_at(deadline, self.deployment.connect(&self.timeouts)).await {
                Ok(Ok(link)) => Ok(link),
                Ok(Err(err)) => Err(CommandError::Redis(err)),
                Err(_elapsed) => Err(CommandError::Timeout),
            }
        };
        match self.link.get(self.timeouts.connect, connecting).await {
            Ok(Linked {
                mut link,
                generation,
                fresh,
            }) => {
                if fresh && self.announce.swap(false, Ordering::Relaxed) {
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

    /// The start-up check, once per cache: memory, eviction policy, and what to fix.
    async fn log_health(&self, link: &mut Link) {
        let cmd = redis::cmd("INFO");
        let info = tokio::time::timeout(self.timeouts.command, cmd.query_async::<String>(link));
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

    /// A command failed while the breaker is open (a probe, or a call in flight when it opened):
    /// Redis has not answered through this link for a whole breaker interval, so the next call
    /// connects anew (behind Sentinel, asking the sentinels where the primary is now).
    fn rebuild_if_stuck(&self, generation: u64) {
        if self.breaker.is_open() {
            self.forget(generation);
        }
    }

    /// Closes the link, if any (a primary that no longer serves slots); a later command would
    /// connect again.
    pub(super) fn disconnect(&self) {
        if let Some((_, generation)) = self.link.current() {
            self.forget(generation);
        }
    }

    /// Forgets a broken link (if it is still the current one); the next call reconnects.
    fn forget(&self, generation: u64) {
        if self.link.forget(generation, |_| true) {
            tracing::debug!("redis_cache: connection lost; reconnecting on next call");
        }
    }
}
