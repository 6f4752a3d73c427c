//! Wake-ups when another process releases a key's lock, over Redis pub/sub.
//!
//! A process waiting for another one's computation subscribes to the lock's channel; the holder
//! publishes on it when it stores the value or gives up. One pub/sub connection per cache, opened
//! on the first wait; one subscription per key being waited on (single-flight leaves one waiter
//! per key per process). A lost message or a dead pub/sub connection only costs latency: waiters
//! also poll, more often when they have no subscription.
//!
//! On a cluster, the connection goes to whichever configured node answers first: a cluster
//! forwards every `PUBLISH` to all its nodes. Behind Sentinel, it goes to the current primary.

use std::collections::HashMap;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_core::Stream;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::Notify;

use crate::connection::{Connection, LazyLink};

/// After a failed pub/sub connection attempt, waiters poll for this long before the next one.
const RECONNECT_BACKOFF: Duration = Duration::from_secs(1);

/// Opens and shares the pub/sub connection of one cache: one for `async` calls, one for
/// blocking calls (see [`crate::blocking`]), each with its own subscriptions.
#[derive(Clone)]
pub(crate) struct Notifier {
    hubs: [Arc<Hub>; 2],
}

struct Hub {
    connect_timeout: Duration,
    /// The pub/sub connection, opened at the first wait.
    link: LazyLink<PubSubSink>,
    state: Mutex<Subscribed>,
}

#[derive(Default)]
struct Subscribed {
    /// Channel -> (its waiters' wake-up, how many subscriptions hold it).
    channels: HashMap<String, (Arc<Notify>, usize)>,
}

/// A subscription to one lock's channel; unsubscribes when the last holder drops it.
pub(crate) struct Subscription {
    shared: Arc<Hub>,
    channel: String,
    notify: Arc<Notify>,
}

impl Subscription {
    /// Woken by every release message on the channel.
    pub(crate) fn notify(&self) -> &Arc<Notify> {
        &self.notify
    }
}

impl Notifier {
    pub(crate) fn new(connect_timeout: Duration) -> Self {
        let hub = || {
            Arc::new(Hub {
                connect_timeout,
                link: LazyLink::new(RECONNECT_BACKOFF),
                state: Mutex::new(Subscribed::default()),
            })
        };
        Notifier {
            hubs: [hub(), hub()],
        }
    }

    /// Subscribes to `channel`, connecting to one of `conn`'s pub/sub servers if needed; `None`
    /// when pub/sub is unavailable (the caller polls instead).
    pub(crate) async fn subscribe(&self, channel: &str, conn: &Connection) -> Option<Subscription> {
        let shared = &self.hubs[usize::from(crate::blocking::on_io_side())];
        {
            let mut state = shared.state();
            if let Some((notify, holders)) = state.channels.get_mut(channel) {
                *holders += 1;
                return Some(Subscription {
                    shared: shared.clone(),
                    channel: channel.to_string(),
                    notify: notify.clone(),
                });
            }
        }
        let (mut sink, _) = shared.sink(conn).await?;
        let ok = tokio::time::timeout(shared.connect_timeout, sink.subscribe(channel))
            .await
            .is_ok_and(|r| r.is_ok());
        if !ok {
            shared.lost(None);
            return None;
        }
        let mut state = shared.state();
        let (notify, holders) = state
            .channels
            .entry(channel.to_string())
            .or_insert_with(|| (Arc::new(Notify::new()), 0));
        *holders += 1;
        Some(Subscription {
            shared: shared.clone(),
            channel: channel.to_string(),
            notify: notify.clone(),
        })
    }
}

impl Hub {
    fn state(&self) -> std::sync::MutexGuard<'_, Subscribed> {
        crate::sync::guard(&self.state)
    }

    /// The live sink, connecting (and starting the reader task) if needed and allowed.
    async fn sink(self: &Arc<Self>, conn: &Connection) -> Option<(PubSubSink, u64)> {
        let timeout = self.connect_timeout;
        let connecting = |generation, _deadline| async move {
            for client in conn.pubsub_clients() {
                let connecting = tokio::time::timeout(timeout, client.get_async_pubsub());
                if let Ok(Ok(pubsub)) = connecting.await {
                    let (sink, stream) = pubsub.split();
                    // Subscriptions of a previous connection are gone with it.
                    self.state().channels.clear();
                    tokio::spawn(read(Arc::downgrade(self), stream, generation));
                    return Ok(sink);
                }
            }
            tracing::debug!("redis_cache: no pub/sub connection; lock waiters poll instead");
            Err(())
        };
        let linked = self.link.get(timeout, connecting).await.ok()?;
        Some((linked.link, linked.generation))
    }

    /// Forgets the connection of `generation` (or the current one), so the next wait reconnects
    /// (after [`RECONNECT_BACKOFF`]).
    fn lost(&self, generation: Option<u64>) {
        let Some(generation) = generation.or_else(|| self.link.current().map(|(_, g)| g)) else {
            return;
        };
        if self.link.forget(generation, |_| true) {
            let mut state = self.state();
            // Wake everyone: their subscriptions are gone, they should look again.
            for (notify, _) in state.channels.values() {
                notify.notify_waiters();
            }
            state.channels.clear();
        }
    }
}

/// Delivers messages to waiters until the connection closes.
async fn read(shared: Weak<Hub>, mut stream: PubSubStream, generation: u64) {
    while let Some(msg) = poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let state = shared.state();
        if let Some((notify, _)) = state.channels.get(msg.get_channel_name()) {
            notify.notify_waiters();
        }
    }
    if let Some(shared) = shared.upgrade() {
        shared.lost(Some(generation));
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        let Some((_, holders)) = state.channels.get_mut(&self.channel) else {
            return;
        };
        *holders -= 1;
        if *holders > 0 {
            return;
        }
        state.channels.remove(&self.channel);
        drop(state);
        let sink = self.shared.link.current().map(|(sink, _)| sink);
        if let (Some(mut sink), Ok(runtime)) = (sink, tokio::runtime::Handle::try_current()) {
            let channel = std::mem::take(&mut self.channel);
            runtime.spawn(async move {
                let _ = sink.unsubscribe(channel).await;
            });
        }
    }
}
