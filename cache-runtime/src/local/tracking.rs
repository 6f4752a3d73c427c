//! The invalidation channel of a local tier: Redis's server-assisted client-side caching, in
//! broadcast mode, over RESP3.
//!
//! One connection per primary (one for a single server or behind Sentinel) sends
//! `CLIENT TRACKING ON BCAST PREFIX {prefix}:{function}:{fingerprint}:{` for each function this
//! process keeps copies of (the route its first call registered; added to the open channel as
//! new ones come), plus a probe prefix that matches no key; from then on the server pushes the
//! name of every key under those prefixes that changes, whoever changes it and however (a write,
//! `DEL`, `UNLINK`, `FLUSHALL`, expiry, eviction). So a process hears of its own functions only:
//! the stores and locks of the fleet's other functions cost it nothing. Broadcast mode does not
//! depend on which connection read a key, so the command connection stays as it is (RESP2,
//! multiplexed, shared by every call). A copy is covered by the channel only if Redis tracked
//! its function's prefix before its read began.
//!
//! Every [`CONFIRM`] the channel pings each primary; a round answered by all of them confirms the
//! tier's copies as of when it was sent (each connection delivers announcements and replies in
//! order, and announcements are applied as they are read). The channel is lost when a
//! connection drops (redis-rs reports it), a ping goes unanswered, or the set of primaries
//! changes (failover, resharding onto a new node): the tier then serves its copies until
//! `local_ttl` past the last confirmation, and once a new channel is up it drops every copy
//! cached before, which may have missed an announcement.
//!
//! A server that refuses (Redis before 6, a managed service without `CLIENT TRACKING`, an ACL
//! without `CLIENT`) is logged once, with the reason; the tier then relies on `local_ttl` alone.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::{Duration, SystemTime};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, PushInfo, PushKind, RedisError, Value};
use tokio::sync::Notify;

use super::Tier;
use crate::connection::Connection;

/// How often the channel's connections are pinged, confirming the copies: well under the
/// shortest `local_ttl` (1 s), so that a copy of a coherent tier does not expire between two
/// confirmations.
const CONFIRM: Duration = Duration::from_millis(250);
/// Appended to the cache's prefix: a tracked prefix no key of the tier has.
const PROBE: &str = "!tracking";
/// How often the tier is looked after (expired copies swept) while the channel is down.
const TICK: Duration = Duration::from_secs(1);
/// Confirmations between two sweeps of the expired copies.
const SWEEP_CONFIRMS: u32 = 4;
/// Confirmations between two comparisons of the primaries (a new primary needs a channel of its
/// own).
const TOPOLOGY_CONFIRMS: u32 = 20;
/// The first wait before opening a lost channel again; doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How long a server that refused tracking is left alone before it is asked again (it may have
/// been upgraded, or its ACL fixed).
const REFUSED_RETRY: Duration = Duration::from_secs(60);

/// Starts the channel of `tier`; it ends when the tier (its cache) is gone.
pub(super) fn start(tier: Weak<Tier>, conn: Arc<Connection>) {
    tokio::spawn(async move {
        let _stopped = Stopped(tier.clone());
        run(tier, conn).await;
    });
}

/// Dropped with the channel's task, however it ends (the cache gone, or the runtime it ran on
/// shut down while the cache lives on, as a `static` cache does across test runtimes): the tier
/// is no longer coherent, and the next call starts a new task.
struct Stopped(Weak<Tier>);

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Some(tier) = self.0.upgrade() {
            tier.set_coherent(false);
            tier.tracking
                .store(false, std::sync::atomic::Ordering::Release);
        }
    }
}

/// An open channel.
struct Channel {
    /// The routes whose prefixes it asked Redis to track when it opened.
    routes: Vec<String>,
    conns: Vec<MultiplexedConnection>,
    /// The servers it listens to, to notice a change of primaries.
    servers: Vec<String>,
    /// Notified by redis-rs when one of the connections drops.
    dropped: Arc<Notify>,
}

enum Failure {
    /// The server answered with an error: it does not do client-side caching for us.
    Refused(RedisError),
    /// No answer: Redis is down or unreachable.
    Unreachable,
}

async fn run(tier: Weak<Tier>, conn: Arc<Connection>) {
    let mut retry = RETRY_MIN;
    let mut refusal_logged = false;
    loop {
        let Some(prefix) = tier.upgrade().map(|t| t.prefix.clone()) else {
            return;
        };
        let wait = match open(&tier, &conn, &prefix).await {
            Ok(channel) => {
                retry = RETRY_MIN;
                refusal_logged = false;
                let Some(t) = tier.upgrade() else { return };
                // Anything cached before now may have missed an announcement.
                t.clear_all();
                t.confirmed.confirm(now_ms());
                t.set_coherent(true);
                t.activate(&channel.routes);
                drop(t);
                tracing::debug!(
                    servers = ?channel.servers,
                    "redis_cache: local tier coherent (client-side caching invalidations)"
                );
                let reason = listen(&tier, &conn, channel).await;
                let Some(t) = tier.upgrade() else { return };
                t.set_coherent(false);
                tracing::debug!(
                    reason,
                    "redis_cache: the local tier's invalidation channel is down; local copies \
                     are served until local_ttl past its last confirmation"
                );
                retry
            }
            Err(Failure::Refused(err)) => {
                if !refusal_logged {
                    refusal_logged = true;
                    tracing::warn!(
                        error = %err,
                        "redis_cache: the server refuses client-side caching (CLIENT TRACKING \
                         over RESP3, Redis 6 or later); local copies are served for at most \
                         local_ttl without Redis's confirmation"
                    );
                    crate::notice::tracking_refused(&err);
                    if let Some(t) = tier.upgrade() {
                        t.changed();
                    }
                }
                REFUSED_RETRY
            }
            Err(Failure::Unreachable) => {
                let wait = retry;
                retry = (retry * 2).min(RETRY_MAX);
                wait
            }
        };
        if !idle(&tier, wait).await {
            return;
        }
    }
}

/// Opens a connection to each primary and turns broadcast tracking on for the cache's prefix.
async fn open(tier: &Weak<Tier>, conn: &Connection, prefix: &str) -> Result<Channel, Failure> {
    let clients = conn
        .tracking_clients()
        .await
        .map_err(|_| Failure::Unreachable)?;
    let dropped = Arc::new(Notify::new());
    let timeouts = conn.timeouts();
    let routes = tier.upgrade().map(|t| t.routes(false)).unwrap_or_default();
    let prefixes: Vec<String> = match tier.upgrade() {
        Some(t) => routes.iter().map(|route| t.tracked_prefix(route)).collect(),
        None => return Err(Failure::Unreachable),
    };
    let mut channel = Channel {
        routes,
        conns: Vec::with_capacity(clients.len()),
        servers: Vec::with_capacity(clients.len()),
        dropped: dropped.clone(),
    };
    for client in clients {
        let (tier, dropped) = (tier.clone(), dropped.clone());
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeouts.connect))
            .set_response_timeout(Some(timeouts.command))
            .set_push_sender(move |push: PushInfo| {
                announced(&tier, &dropped, push);
                Ok::<(), redis::aio::SendError>(())
            });
        let mut link = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(failure)?;
        // The probe prefix matches no key of the tier (and overlaps no route's prefix): it turns
        // tracking on, so that a server refusing it says so now, before any route exists.
        let mut on = redis::cmd("CLIENT");
        on.arg("TRACKING")
            .arg("ON")
            .arg("BCAST")
            .arg("PREFIX")
            .arg(format!("{prefix}{PROBE}"));
        for tracked in &prefixes {
            on.arg("PREFIX").arg(tracked);
        }
        let () = on.query_async(&mut link).await.map_err(failure)?;
        channel
            .servers
            .push(client.get_connection_info().addr().to_string());
        channel.conns.push(link);
    }
    Ok(channel)
}

fn failure(err: RedisError) -> Failure {
    // An error reply (or a refused RESP3 handshake) is the server's answer; anything else means
    // it could not be reached.
    if err.code().is_some() || err.kind() == redis::ErrorKind::AuthenticationFailed {
        Failure::Refused(err)
    } else {
        Failure::Unreachable
    }
}

/// What redis-rs pushes to a channel connection.
fn announced(tier: &Weak<Tier>, dropped: &Notify, push: PushInfo) {
    match push.kind {
        PushKind::Invalidate => {
            let Some(tier) = tier.upgrade() else { return };
            match push.data.into_iter().next() {
                Some(Value::Array(keys)) => {
                    let keys = keys
                        .into_iter()
                        .filter_map(|key| match key {
                            Value::BulkString(bytes) => Some(bytes),
                            _ => None,
                        })
                        .collect();
                    tier.invalidated(Some(keys), true);
                }
                // `FLUSHALL` / `FLUSHDB`: every key changed.
                _ => tier.invalidated(None, true),
            }
        }
        PushKind::Disconnection => dropped.notify_one(),
        _ => {}
    }
}

/// Keeps the channel until it is lost; returns why.
async fn listen(tier: &Weak<Tier>, conn: &Connection, mut channel: Channel) -> &'static str {
    let mut rounds = 0u32;
    loop {
        let Some(t) = tier.upgrade() else {
            return "the cache is gone";
        };
        let woke = {
            let mut dropped = pin!(channel.dropped.notified());
            let mut routes = pin!(t.new_routes.notified());
            let woke = std::future::poll_fn(|cx| {
                if dropped.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Woke::Dropped);
                }
                if routes.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Woke::Routes);
                }
                Poll::Pending
            });
            tokio::time::timeout(CONFIRM, woke).await
        };
        match woke {
            Ok(Woke::Dropped) => return "a connection dropped",
            Ok(Woke::Routes) => {
                if let Err(reason) = track_new_routes(&t, &mut channel).await {
                    return reason;
                }
                continue;
            }
            Err(_) => {}
        }
        drop(t);
        rounds += 1;
        let sent = now_ms();
        for link in &mut channel.conns {
            let pong: Result<String, _> = redis::cmd("PING").query_async(link).await;
            if pong.is_err() {
                return "a ping went unanswered";
            }
        }
        let Some(t) = tier.upgrade() else {
            return "the cache is gone";
        };
        // Every announcement sent before the pings has been applied.
        t.confirmed.confirm(sent);
        if rounds.is_multiple_of(SWEEP_CONFIRMS) {
            t.sweep(now_ms());
        }
        drop(t);
        if rounds.is_multiple_of(TOPOLOGY_CONFIRMS) {
            let servers = conn.tracking_clients().await.map(|clients| {
                clients
                    .iter()
                    .map(|c| c.get_connection_info().addr().to_string())
                    .collect::<Vec<_>>()
            });
            if servers.is_ok_and(|servers| servers != channel.servers) {
                return "the primaries changed";
            }
        }
    }
}

/// What ended a wait of the channel.
enum Woke {
    Dropped,
    Routes,
}

/// Asks every primary to track the prefixes of the routes added since, then marks them tracked.
/// A refusal (an error reply) leaves them untracked: their copies live `local_ttl` at most.
async fn track_new_routes(tier: &Tier, channel: &mut Channel) -> Result<(), &'static str> {
    let routes = tier.routes(true);
    if routes.is_empty() {
        return Ok(());
    }
    let mut on = redis::cmd("CLIENT");
    on.arg("TRACKING").arg("ON").arg("BCAST");
    for route in &routes {
        on.arg("PREFIX").arg(tier.tracked_prefix(route));
    }
    for link in &mut channel.conns {
        let added: Result<(), RedisError> = on.query_async(link).await;
        match added {
            Ok(()) => {}
            Err(err) if err.code().is_some() => {
                tracing::warn!(
                    error = %err,
                    ?routes,
                    "redis_cache: the server refused to track a function's keys for the local \
                     tier; its copies are served for at most local_ttl"
                );
                return Ok(());
            }
            Err(_) => return Err("a connection dropped"),
        }
    }
    tier.activate(&routes);
    Ok(())
}

/// Waits `wait`, sweeping expired copies meanwhile; `false` when the tier is gone.
async fn idle(tier: &Weak<Tier>, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let Some(t) = tier.upgrade() else {
            return false;
        };
        t.sweep(now_ms());
        drop(t);
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return true;
        }
        tokio::time::sleep_until(deadline.min(now + TICK)).await;
    }
}

fn now_ms() -> u64 {
    crate::envelope::unix_ms(SystemTime::now())
}
