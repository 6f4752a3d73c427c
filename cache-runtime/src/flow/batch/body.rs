//! How a batch function's body reaches the flow: a closure called with the keys to compute, in
//! the call ([`Inline`]), or able to outlive it ([`BatchBackground`], for `refresh =
//! "background"`) so a refresh of stale items alone runs in a spawned task.

use std::future::Future;
use std::marker::PhantomData;

use super::refresh::BatchRefreshJob;
use crate::flow::Inline;
use crate::policy::Rules;

/// A batch function's body, as the flow runs it: at most once per call.
#[doc(hidden)]
pub trait BatchBody<K, R, V>: Sized {
    /// The body's future.
    type Run: Future<Output = BatchComputed<R>>;

    /// The future computing `keys` in this call.
    fn run(self, keys: Vec<K>) -> Self::Run;

    /// Starts the refresh `job` in a spawned task, if this body can outlive the call (otherwise
    /// it is handed back, and the refresh is left for a later call).
    fn detach(self, job: BatchRefreshJob<'_, K, V>) -> Result<(), Self> {
        let _ = job;
        Err(self)
    }
}

/// What a batch body returns: the function's value, and for each key it was called with (in
/// that order) the tags its `tags("...")` templates render to.
#[doc(hidden)]
#[derive(Debug)]
pub struct BatchComputed<R> {
    pub value: R,
    pub tags: Vec<Vec<String>>,
}

impl<K, R, V, F, Fut> BatchBody<K, R, V> for Inline<F>
where
    F: FnOnce(Vec<K>) -> Fut,
    Fut: Future<Output = BatchComputed<R>>,
{
    type Run = Fut;

    fn run(self, keys: Vec<K>) -> Fut {
        (self.0)(keys)
    }
}

/// The body of a batch function with `refresh = "background"`: a closure making a
/// `Send + 'static` future (it owns the arguments, and a clone of `self`).
#[doc(hidden)]
pub struct BatchBackground<F, K, V: 'static> {
    pub(crate) make: F,
    /// Spawns the refresh (`flow::batch::refresh::spawn` for the function's types).
    pub(crate) spawn: fn(BatchRefreshJob<'_, K, V>, Rules<'static, V>, F),
    pub(crate) keys: PhantomData<fn() -> K>,
}

impl<F, K, V: 'static> std::fmt::Debug for BatchBackground<F, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchBackground").finish_non_exhaustive()
    }
}

impl<K, R, V: 'static, F, Fut> BatchBody<K, R, V> for BatchBackground<F, K, V>
where
    F: FnOnce(Vec<K>) -> Fut,
    Fut: Future<Output = BatchComputed<R>>,
{
    type Run = Fut;

    fn run(self, keys: Vec<K>) -> Fut {
        (self.make)(keys)
    }

    fn detach(self, job: BatchRefreshJob<'_, K, V>) -> Result<(), Self> {
        let Some(rules) = job.rules.detached() else {
            return Err(self);
        };
        (self.spawn)(job, rules, self.make);
        Ok(())
    }
}
