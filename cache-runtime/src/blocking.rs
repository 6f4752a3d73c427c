//! Blocking (non-`async`) cached functions: the cache's own I/O thread, and the executor a
//! blocking call runs its lookup on.
//!
//! A blocking call polls the same flow as an `async` one, on the calling thread, parked between
//! polls. What it waits for (a reply, a timer, a lock's wake-up) must make progress without that
//! thread, and without the runtime the caller may be running on: a blocking call made inside a
//! current-thread runtime's task holds the only thread that drives that runtime, so a connection
//! made there would never be read. So a blocking call:
//!
//! - enters the context of the cache's I/O runtime (one worker thread, `redis-cache-io`, started
//!   on the first blocking call and kept for the life of the process): its timers and the tasks
//!   it spawns (stores, lock releases, lock renewals) live there;
//! - uses links made on that runtime ([`LazyLink`](crate::connection::LazyLink) and the lock
//!   wake-ups' hub keep one set for blocking calls, chosen by [`on_io_side`]), never those of
//!   the caller's runtime;
//! - follows (single-flight) only a leader on the I/O side: a leader on a runtime whose thread
//!   the call holds could never finish. Beside one, it meets it at the key's Redis lock;
//! - renews its key's lock from a task, since its body runs to the end within one poll;
//! - runs the body itself off the I/O side, in the caller's runtime context if there was one
//!   ([`blocking_body`]).
//!
//! A program that uses both kinds of calls has two connections per server: one for its `async`
//! calls, on its runtime, and one for its blocking calls, on the I/O thread. Two things are
//! shared and not split: the local tier's invalidation channel runs where the tier's first call
//! started it (a blocking call that holds that runtime's thread delays the tier's hearing of
//! changes, whose copies stay bounded by `local_ttl`), and the locks that serialize a cluster's
//! slot-map reads and a Sentinel lookup (a wait on them is bounded by the connect timeout).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

/// The name of the cache's I/O thread.
pub const IO_THREAD_NAME: &str = "redis-cache-io";

thread_local! {
    /// Set on the I/O runtime's threads, and on a thread while it polls a blocking call.
    static IO_SIDE: Cell<bool> = const { Cell::new(false) };
    /// Set on the I/O runtime's threads.
    static IO_THREAD: Cell<bool> = const { Cell::new(false) };
    /// The runtime the innermost blocking call on this thread was made in, if any.
    static CALLER: RefCell<Option<tokio::runtime::Handle>> = const { RefCell::new(None) };
}

/// Whether this code runs for a blocking call (or on the I/O thread): its links must be those
/// made on the I/O runtime.
pub(crate) fn on_io_side() -> bool {
    IO_SIDE.with(Cell::get)
}

/// The I/O runtime's handle; `None` if it could not be started (the call then runs where it is,
/// as an `async` call would).
///
/// One worker: it only moves bytes and runs the cache's own small tasks. Multi-threaded all the
/// same, so that a blocking call made on it (a background refresh of an `async` function started
/// by a blocking call, whose body calls a blocking function) hands the worker's duties to another
/// thread instead of stalling the I/O it waits for.
fn io_runtime() -> Option<&'static tokio::runtime::Handle> {
    static IO: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    IO.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(IO_THREAD_NAME)
            .on_thread_start(|| {
                IO_SIDE.with(|side| side.set(true));
                IO_THREAD.with(|io| io.set(true));
            })
            .enable_all()
            .build()
            .map_err(|err| tracing::warn!(error = %err, "redis_cache: no I/O runtime"))
            .ok()
    })
    .as_ref()
    .map(tokio::runtime::Runtime::handle)
}

/// Runs `future` (a cached call, or any future of this crate: [`Cache::flush`], a tag's
/// invalidation...) to completion on the calling thread, which it blocks; its I/O, timers and
/// background work run on the cache's own I/O thread, so it needs no runtime and works from any
/// thread: a plain one, `spawn_blocking`'s, or a Tokio worker of either flavour (whose other
/// tasks then wait, as they would for any blocking call).
///
/// The functions `#[redis_cache]` generates for a blocking `fn` call this; call it yourself for
/// the cache's `async` methods in a program without a runtime:
///
/// ```no_run
/// # fn main() {
/// let cache = redis_cached::default_cache();
/// redis_cached::block_on(cache.flush());
/// # }
/// ```
///
/// [`Cache::flush`]: crate::Cache::flush
pub fn block_on<F: Future>(future: F) -> F::Output {
    if IO_THREAD.with(Cell::get) && tokio::runtime::Handle::try_current().is_ok() {
        // On the I/O runtime's worker: another thread takes over its I/O while this one waits.
        return tokio::task::block_in_place(|| park_on(future));
    }
    park_on(future)
}

/// Runs a blocking function's body, from inside its call's flow: off the I/O side, and in the
/// context of the runtime the caller was in, if any (what the body spawns goes there, and an
/// `async` cached call it makes uses that runtime's links). Without one, the body still sees
/// the cache's I/O runtime as current: it should not spawn on it.
pub fn blocking_body<R>(body: impl FnOnce() -> R) -> R {
    let _side = IoSide::set(false);
    let caller = CALLER.with(|caller| caller.borrow().clone());
    let _context = caller.as_ref().map(tokio::runtime::Handle::enter);
    body()
}

/// [`block_on`] on a thread that may block.
fn park_on<F: Future>(future: F) -> F::Output {
    // Nested in another blocking call's poll (a `_refresh` companion calling its function), the
    // current runtime is the I/O one: the body's caller is still the outer call's.
    let caller = match on_io_side() {
        true => CALLER.with(|caller| caller.borrow().clone()),
        false => tokio::runtime::Handle::try_current().ok(),
    };
    let _caller = Caller::record(caller);
    let _context = io_runtime().map(tokio::runtime::Handle::enter);
    // Marked for the whole call, the future's drop included (a panic unwinding through it).
    let _side = IoSide::set(true);
    // Unconstrained: on a Tokio worker, the budget of the task this thread was running would
    // otherwise run out, and every poll would be refused.
    let mut future = pin!(tokio::task::unconstrained(future));
    // A waker of this call's own: a call nested in another's poll parks the same thread, and
    // must not take the outer call's wake-up for its own (the flag keeps it).
    let wake = Arc::new(Unpark {
        thread: std::thread::current(),
        woken: AtomicBool::new(false),
    });
    let waker = Waker::from(wake.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        // A wake-up between the poll and the park makes the park return at once.
        while !wake.woken.swap(false, Ordering::Acquire) {
            std::thread::park();
        }
    }
}

/// Marks the thread as on the I/O side during a call; restores what it was, panics included
/// (a blocking call nested in another's body keeps its caller's mark).
struct IoSide(bool);

impl IoSide {
    fn set(on: bool) -> IoSide {
        IoSide(IO_SIDE.with(|side| side.replace(on)))
    }
}

/// The runtime a blocking call was made in (if any), for its body; restores the outer call's
/// when dropped.
struct Caller(Option<tokio::runtime::Handle>);

impl Caller {
    fn record(runtime: Option<tokio::runtime::Handle>) -> Caller {
        Caller(CALLER.with(|caller| caller.replace(runtime)))
    }
}

impl Drop for Caller {
    fn drop(&mut self) {
        let outer = self.0.take();
        CALLER.with(|caller| *caller.borrow_mut() = outer);
    }
}

impl Drop for IoSide {
    fn drop(&mut self) {
        IO_SIDE.with(|side| side.set(self.0));
    }
}

/// Wakes the thread parked in one call.
struct Unpark {
    thread: Thread,
    woken: AtomicBool,
}

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_timers_and_tasks_without_a_runtime_of_its_own() {
        let spawned = block_on(async {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            tokio::spawn(async { on_io_side() }).await.unwrap()
        });
        assert!(spawned, "spawned work runs on the I/O thread");
        assert!(!on_io_side(), "the mark is taken off after the call");
    }

    #[test]
    fn does_not_need_the_callers_current_thread_runtime() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Inside a task of a current-thread runtime, whose only thread is blocked here: the
        // timer and the task must still complete.
        let answer = runtime.block_on(async {
            block_on(async {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                tokio::spawn(async { 42 }).await.unwrap()
            })
        });
        assert_eq!(answer, 42);
    }

    #[test]
    fn a_blocking_call_made_on_the_io_thread_does_not_stall_it() {
        let answer = block_on(async {
            tokio::spawn(async {
                assert!(IO_THREAD.with(Cell::get));
                block_on(async {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    tokio::spawn(async { 7 }).await.unwrap()
                })
            })
            .await
            .unwrap()
        });
        assert_eq!(answer, 7);
    }

    #[test]
    fn a_body_runs_off_the_io_side_in_its_callers_runtime() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (side, spawned) = block_on(async {
                blocking_body(|| {
                    (
                        on_io_side(),
                        tokio::spawn(async { IO_THREAD.with(Cell::get) }),
                    )
                })
            });
            assert!(!side, "the body is off the I/O side");
            assert!(!spawned.await.unwrap(), "it spawns on its caller's runtime");
        });
    }

    #[test]
    #[allow(clippy::async_yields_async)] // the inner call hands out the spawned task's handle
    fn a_nested_call_keeps_the_outer_calls_caller() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let spawned = block_on(async {
                block_on(async {
                    blocking_body(|| tokio::spawn(async { IO_THREAD.with(Cell::get) }))
                })
            });
            assert!(
                !spawned.await.unwrap(),
                "it spawns on the outer caller's runtime"
            );
        });
    }

    /// The outer call is woken while the nested one parks: the wake-up must not be lost to it.
    #[test]
    fn a_nested_call_does_not_take_the_outer_calls_wake_up() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (sent, nested) = block_on(async {
            tokio::join!(rx, async {
                block_on(async {
                    tokio::spawn(async move { tx.send(1).unwrap() })
                        .await
                        .unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    2
                })
            })
        });
        assert_eq!((sent.unwrap(), nested), (1, 2));
    }

    #[test]
    fn nested_calls_keep_the_outer_mark() {
        let inner = block_on(async { block_on(async { on_io_side() }) && on_io_side() });
        assert!(inner);
        assert!(!on_io_side());
    }
}
