//! Work a cache finishes after (or independently of) the call that started it: stores, and the
//! release of a lock whose holder was cancelled or panicked. Each runs in a spawned task counted
//! here, so [`Cache::flush`](crate::Cache::flush) can wait for all of them.
//!
//! A spawned task is also what keeps a store cancel-safe: a caller that awaits its store and is
//! cancelled meanwhile drops only its handle; the store lands anyway.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The spawned tasks of one cache that have not ended yet. Clones share them.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tasks {
    shared: Arc<TaskTable>,
}

#[derive(Debug, Default)]
struct TaskTable {
    state: Mutex<Numbering>,
    ended: Notify,
}

/// Tasks are numbered in the order they were spawned, so a flush waits for those spawned before
/// it and not for a stream of new ones: under steady load there may never be a moment with no
/// task running.
#[derive(Debug, Default)]
struct Numbering {
    next: u64,
    /// Each running task's number, and whether it was spawned from the I/O side (a blocking
    /// call, or the cache's I/O runtime), where a blocking flush waits only for those.
    running: BTreeMap<u64, bool>,
}

impl TaskTable {
    fn state(&self) -> MutexGuard<'_, Numbering> {
        crate::sync::guard(&self.state)
    }
}

impl Tasks {
    /// Spawns `work` on the current Tokio runtime, counted until its task ends however it ends
    /// (finished, panicked, or dropped with the runtime). Panics outside a runtime, like
    /// `tokio::spawn`: a cached call checks for one before it touches Redis.
    pub(crate) fn spawn<F>(&self, work: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_on(&tokio::runtime::Handle::current(), work)
    }

    /// [`Tasks::spawn`] on `runtime`, for code that may run outside a runtime's context (a
    /// `Drop`).
    pub(crate) fn spawn_on<F>(
        &self,
        runtime: &tokio::runtime::Handle,
        work: F,
    ) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let running = {
            let mut state = self.shared.state();
            let number = state.next;
            state.next += 1;
            state.running.insert(number, crate::blocking::on_io_side());
            Running {
                shared: self.shared.clone(),
                number,
            }
        };
        runtime.spawn(async move {
            let _running = running;
            work.await
        })
    }

    /// Returns once every task spawned before this call has ended. From the I/O side (a
    /// blocking `flush`), only those spawned from there: the others may run on the runtime whose
    /// thread the blocking caller holds.
    pub(crate) async fn settled(&self) {
        let shared = &self.shared;
        let upto = shared.state().next;
        let io_side = crate::blocking::on_io_side();
        loop {
            let ended = shared.ended.notified();
            let mut ended = std::pin::pin!(ended);
            // Registered before looking, so a task ending in between is not missed.
            ended.as_mut().enable();
            let pending = shared
                .state()
                .running
                .range(..upto)
                .any(|(_, &spawned_io_side)| spawned_io_side || !io_side);
            if !pending {
                return;
            }
            ended.await;
        }
    }
}

/// Marks its task as ended when dropped, so a panic or a runtime shutdown counts too.
struct Running {
    shared: Arc<TaskTable>,
    number: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shared.state().running.remove(&self.number);
        self.shared.ended.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn settled_waits_for_the_tasks_spawned_before_it_and_only_those() {
        let background = Tasks::default();
        let (finish_first, first_may_end) = oneshot::channel::<()>();
        background.spawn(async move {
            let _ = first_may_end.await;
        });
        let mut settled = Box::pin(background.settled());
        assert!(
            futures_poll_once(settled.as_mut()).await.is_pending(),
            "the first task still runs"
        );
        // Spawned after the flush began: never ends, and is not waited for.
        let (_keep_open, never) = oneshot::channel::<()>();
        background.spawn(async move {
            let _ = never.await;
        });
        finish_first.send(()).unwrap();
        settled.await;
        assert_eq!(background.shared.state().running.len(), 1);
    }

    #[tokio::test]
    async fn a_panicking_task_counts_as_ended() {
        let background = Tasks::default();
        let handle = background.spawn(async { panic!("a store panicked") });
        assert!(handle.await.unwrap_err().is_panic());
        background.settled().await;
        assert!(background.shared.state().running.is_empty());
    }

    /// Polls `future` once.
    async fn futures_poll_once<F: Future + Unpin>(mut future: F) -> std::task::Poll<F::Output> {
        std::future::poll_fn(|cx| std::task::Poll::Ready(std::pin::Pin::new(&mut future).poll(cx)))
            .await
    }
}
