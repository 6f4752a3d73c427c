//! A connection made on first use and shared: the command connection of a cache and its pub/sub
//! connection are both one of these.
//!
//! - Callers that find no link make one attempt between them; the others wait for its outcome
//!   instead of piling up attempts of their own (a dead server would otherwise get one connect
//!   per call).
//! - Links are numbered (generations), so a failure noticed late on an old link does not discard
//!   the new one that replaced it.
//! - After a failed attempt, callers give up at once for `backoff` (the command connection has a
//!   circuit breaker for that and uses none).
//! - A link lives on the Tokio runtime that made it (redis-rs drives the socket from a task
//!   spawned there). When that runtime shuts down (a `#[tokio::test]` ends, a program makes a
//!   new runtime), the link is dead: the next caller, on whatever runtime it runs, connects anew
//!   at once instead of failing on the dead link first.
//! - Blocking calls have a link of their own, made on the cache's I/O runtime
//!   ([`crate::blocking`]): one made on the caller's runtime may be driven by the very thread the
//!   blocking call holds.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// A lazily connected, shared link of type `L` (a cheap-to-clone connection handle).
#[derive(Debug)]
pub(crate) struct LazyLink<L> {
    /// The link of `async` calls, then that of blocking calls.
    sides: [Side<L>; 2],
    /// The last generation given to an attempt, on either side.
    generations: AtomicU64,
    backoff: Duration,
}

/// The link of one kind of call.
#[derive(Debug)]
struct Side<L> {
    state: Mutex<LinkState<L>>,
    /// One connection attempt at a time.
    connecting: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct LinkState<L> {
    link: Option<Held<L>>,
    /// Connection attempts made: a caller that waited for another's attempt does not repeat it.
    attempts: u64,
    /// No attempt before this instant (set by a failed one).
    retry_at: Option<Instant>,
}

/// The live link, its generation, and whether the runtime it was made on has ended.
#[derive(Debug)]
struct Held<L> {
    link: L,
    generation: u64,
    runtime: RuntimeWatch,
}

impl<L> Held<L> {
    /// The link, unless its runtime has ended.
    fn live(&self) -> Option<(&L, u64)> {
        (!self.runtime.ended()).then_some((&self.link, self.generation))
    }
}

/// Tells when the Tokio runtime a link was made on has shut down: a task spawned there holds a
/// guard that marks it when the runtime drops the task. The task ends with the link (dropping
/// the watch), so links replaced over a long life leave no tasks behind.
#[derive(Debug)]
struct RuntimeWatch {
    ended: Arc<AtomicBool>,
    /// Dropped with the watch: ends the task.
    _link_gone: Option<tokio::sync::oneshot::Sender<()>>,
}

impl RuntimeWatch {
    fn on_current_runtime() -> RuntimeWatch {
        let ended = Arc::new(AtomicBool::new(false));
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return RuntimeWatch {
                ended,
                _link_gone: None,
            };
        };
        struct MarkEnded(Arc<AtomicBool>);
        impl Drop for MarkEnded {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let (link_gone, gone) = tokio::sync::oneshot::channel::<()>();
        let mark = MarkEnded(ended.clone());
        runtime.spawn(async move {
            let _mark = mark;
            let _ = gone.await;
        });
        RuntimeWatch {
            ended,
            _link_gone: Some(link_gone),
        }
    }

    fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }
}

/// Why [`LazyLink::get`] has no link to give.
#[derive(Debug)]
pub(crate) enum Unlinked<E> {
    /// The deadline passed while another caller's attempt was under way.
    TimedOut,
    /// Another caller's attempt failed meanwhile, or the last one failed less than the backoff
    /// ago: not repeated at once.
    Recently,
    /// This caller's attempt failed.
    Failed(E),
}

impl<L: Clone> LazyLink<L> {
    pub(crate) fn new(backoff: Duration) -> Self {
        let side = || Side {
            state: Mutex::new(LinkState {
                link: None,
                attempts: 0,
                retry_at: None,
            }),
            connecting: tokio::sync::Mutex::new(()),
        };
        LazyLink {
            sides: [side(), side()],
            generations: AtomicU64::new(0),
            backoff,
        }
    }

    /// The side of the calling code: a blocking call's, or an `async` call's.
    fn side(&self) -> &Side<L> {
        &self.sides[usize::from(crate::blocking::on_io_side())]
    }

    fn state(&self) -> MutexGuard<'_, LinkState<L>> {
        crate::sync::guard(&self.side().state)
    }

    /// The live link and its generation, if there is one.
    pub(crate) fn current(&self) -> Option<(L, u64)> {
        let state = self.state();
        let (link, generation) = state.link.as_ref()?.live()?;
        Some((link.clone(), generation))
    }

    /// The live link, connecting with `connect` first if there is none. Waiting for another
    /// caller's attempt and making our own share one deadline, `timeout` from now: `connect` is
    /// given it, with the generation its link will have. The clock is read only when there is
    /// no link (not on every command). `fresh` in the answer: this call connected it.
    pub(crate) async fn get<E, F, Fut>(
        &self,
        timeout: Duration,
        connect: F,
    ) -> Result<Linked<L>, Unlinked<E>>
    where
        F: FnOnce(u64, Instant) -> Fut,
        Fut: Future<Output = Result<L, E>>,
    {
        let seen = {
            let mut state = self.state();
            if let Some(held) = &state.link {
                if let Some((link, generation)) = held.live() {
                    return Ok(Linked::found(link.clone(), generation));
                }
                // Its runtime has shut down: connect anew, without waiting for a backoff.
                state.link = None;
            }
            if state.retry_at.is_some_and(|at| Instant::now() < at) {
                return Err(Unlinked::Recently);
            }
            state.attempts
        };
        // Boxed: the connecting future is large, and every command's future would carry it.
        Box::pin(self.connect(seen, Instant::now() + timeout, connect)).await
    }

    async fn connect<E, F, Fut>(
        &self,
        seen: u64,
        deadline: Instant,
        connect: F,
    ) -> Result<Linked<L>, Unlinked<E>>
    where
        F: FnOnce(u64, Instant) -> Fut,
        Fut: Future<Output = Result<L, E>>,
    {
        let _gate = tokio::time::timeout_at(deadline, self.side().connecting.lock())
            .await
            .map_err(|_| Unlinked::TimedOut)?;
        let generation = {
            let state = self.state();
            if let Some((link, generation)) = state.link.as_ref().and_then(Held::live) {
                return Ok(Linked::found(link.clone(), generation));
            }
            if state.attempts != seen {
                // Someone tried while we waited, and failed: do not repeat it at once.
                return Err(Unlinked::Recently);
            }
            self.generations.fetch_add(1, Ordering::Relaxed) + 1
        };
        let attempt = connect(generation, deadline).await;
        let mut state = self.state();
        state.attempts += 1;
        match attempt {
            Ok(link) => {
                state.link = Some(Held {
                    link: link.clone(),
                    generation,
                    runtime: RuntimeWatch::on_current_runtime(),
                });
                state.retry_at = None;
                Ok(Linked {
                    link,
                    generation,
                    fresh: true,
                })
            }
            Err(err) => {
                state.retry_at = Some(Instant::now() + self.backoff);
                Err(Unlinked::Failed(err))
            }
        }
    }

    /// Forgets the link of `generation` if it is still the current one and `applies` to it; the
    /// next caller reconnects (after the backoff). `true` if it was forgotten.
    pub(crate) fn forget(&self, generation: u64, applies: impl Fn(&L) -> bool) -> bool {
        // Generations are unique across the sides: the link is on one of them at most.
        self.sides.iter().any(|side| {
            let mut state = crate::sync::guard(&side.state);
            let current = state
                .link
                .as_ref()
                .is_some_and(|held| held.generation == generation && applies(&held.link));
            if current {
                state.link = None;
                state.retry_at = Some(Instant::now() + self.backoff);
            }
            current
        })
    }
}

/// A link [`LazyLink::get`] gave.
#[derive(Debug)]
pub(crate) struct Linked<L> {
    pub link: L,
    pub generation: u64,
    /// This call made the connection.
    pub fresh: bool,
}

impl<L> Linked<L> {
    fn found(link: L, generation: u64) -> Self {
        Linked {
            link,
            generation,
            fresh: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const FAR: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn concurrent_callers_share_one_attempt() {
        let link = Arc::new(LazyLink::<u32>::new(Duration::ZERO));
        let attempts = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let (link, attempts, mut released) =
                    (link.clone(), attempts.clone(), released.clone());
                tokio::spawn(async move {
                    link.get(FAR, |generation, _| async move {
                        attempts.fetch_add(1, Ordering::SeqCst);
                        let _ = released.wait_for(|r| *r).await;
                        Ok::<_, ()>(generation as u32 * 10)
                    })
                    .await
                    .map(|linked| linked.link)
                })
            })
            .collect();
        tokio::task::yield_now().await;
        release.send(true).unwrap();
        for caller in callers {
            assert_eq!(caller.await.unwrap().unwrap(), 10);
        }
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failure_is_not_repeated_during_the_backoff_and_generations_fence_forgetting() {
        let link = LazyLink::<u32>::new(Duration::from_secs(60));
        let failed = link.get(FAR, |_, _| async { Err::<u32, _>("down") }).await;
        assert!(matches!(failed, Err(Unlinked::Failed("down"))));
        let again = link.get(FAR, |_, _| async { Ok::<_, &str>(1) }).await;
        assert!(matches!(again, Err(Unlinked::Recently)));

        let link = LazyLink::<u32>::new(Duration::ZERO);
        let first = link.get(FAR, |g, _| async move { Ok::<_, ()>(g as u32) });
        let first = first.await.unwrap();
        assert!(first.fresh);
        assert!(link.forget(first.generation, |_| true));
        let second = link.get(FAR, |g, _| async move { Ok::<_, ()>(g as u32) });
        let second = second.await.unwrap();
        assert_eq!(second.generation, 2);
        // A late failure report about the first link leaves the second in place.
        assert!(!link.forget(first.generation, |_| true));
        assert_eq!(link.current().map(|(l, _)| l), Some(2));
    }
}
