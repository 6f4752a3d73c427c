//! How the function's body reaches the flow: polled in the call ([`Inline`]), or able to outlive
//! it ([`Background`], for `refresh = "background"` and `soft_timeout`), so an early or stale
//! refresh runs in a spawned task while the caller is served the current value (at once, or
//! after `soft_timeout` if the refresh has not finished by then).

use std::future::Future;
use std::marker::PhantomData;

use tokio::sync::oneshot;

use crate::cache::Cache;
use crate::envelope::Meta;
use crate::policy::Rules;
use crate::site::Site;
use crate::stats::Outcome;

/// What a spawned refresh hands the caller that waits for it: the value it computed (or found
/// newer, with that entry's header) and how the call counts. Dropped unsent when it leaves the
/// served entry in place.
pub(crate) type Settled<R> = oneshot::Receiver<RefreshAnswer<R>>;

/// See [`Settled`].
#[doc(hidden)]
#[derive(Debug)]
pub struct RefreshAnswer<R> {
    pub(crate) value: R,
    pub(crate) outcome: Outcome,
    pub(crate) newer: Option<Meta>,
}

/// The function's body, as the flow runs it.
#[doc(hidden)]
pub trait Body<R, T>: Sized {
    /// The body's future.
    type Run: Future<Output = Computed<R>>;

    /// The future to run in this call.
    fn run(self) -> Self::Run;

    /// Starts the refresh `job` in a spawned task, if this body can outlive the call (otherwise
    /// it is handed back, to refresh in the call). With `wait`, the caller may wait for its
    /// value: `Some` when the task started (`None`: this process refreshes the key already).
    fn detach(self, job: RefreshJob<'_, T>, wait: bool) -> Result<Option<Settled<R>>, Self> {
        let _ = (job, wait);
        Err(self)
    }
}

/// What the body returns: the function's value, and the tags it rendered from the arguments
/// before running (`tags("product:{id}")`; none for a function without them).
#[doc(hidden)]
#[derive(Debug)]
pub struct Computed<R> {
    pub value: R,
    pub tags: Vec<String>,
}

/// A refresh of an entry that is still served: where, and why.
#[doc(hidden)]
#[derive(Debug)]
pub struct RefreshJob<'a, T> {
    pub(crate) site: &'static Site,
    pub(crate) cache: &'a Cache,
    pub(crate) key: &'a str,
    /// The served entry's header: a refresh finding a newer entry does not recompute.
    pub(crate) meta: Meta,
    /// Early (XFetch, the entry is fresh) rather than in the stale window.
    pub(crate) early: bool,
    pub(crate) rules: &'a Rules<'a, T>,
    /// The format the refreshed value is stored in: the call's.
    pub(crate) codec: crate::Codec,
}

/// The body of a function refreshed in the call: a closure making its future (it owns the
/// arguments), called only when the body runs. Each layer of the flow holds the closure across
/// its awaits, not the future: a body keeping a kilobyte alive across an `.await` would
/// otherwise be copied into every layer's state and moved on every call, local hits included
/// (rust-lang/rust#62958).
#[doc(hidden)]
#[derive(Debug)]
pub struct Inline<M>(pub M);

impl<R, T, M, F> Body<R, T> for Inline<M>
where
    M: FnOnce() -> F,
    F: Future<Output = Computed<R>>,
{
    type Run = F;

    fn run(self) -> F {
        (self.0)()
    }
}

/// The body of a function with `refresh = "background"` or `soft_timeout`: a closure making a
/// `Send + 'static` future (it owns the arguments, and a clone of `self`), made only when the
/// body runs.
#[doc(hidden)]
pub struct Background<M, F, T: 'static, R> {
    pub(crate) make: M,
    /// Spawns the refresh, making the body only if this process is not refreshing the key
    /// already (`flow::spawn_refresh` for the function's types); with `true`, hands its value
    /// back.
    pub(crate) spawn: SpawnRefresh<M, T, R>,
    pub(crate) future: PhantomData<fn() -> F>,
}

/// Spawns a refresh (see [`Background`]).
pub(crate) type SpawnRefresh<M, T, R> =
    fn(RefreshJob<'_, T>, Rules<'static, T>, M, bool) -> Option<Settled<R>>;

impl<M, F, T: 'static, R> std::fmt::Debug for Background<M, F, T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background").finish_non_exhaustive()
    }
}

impl<R, T: 'static, M, F> Body<R, T> for Background<M, F, T, R>
where
    M: FnOnce() -> F,
    F: Future<Output = Computed<R>>,
{
    type Run = F;

    fn run(self) -> F {
        (self.make)()
    }

    fn detach(self, job: RefreshJob<'_, T>, wait: bool) -> Result<Option<Settled<R>>, Self> {
        // A closure borrowing from the call (not possible from the macro) refreshes in the call.
        let Some(rules) = job.rules.detached() else {
            return Err(self);
        };
        Ok((self.spawn)(job, rules, self.make, wait))
    }
}
