//! One `static Site` per annotated function: its options, its counters and latencies, and how it
//! reports them (trace events, rate-limited warnings, metrics).

use std::any::Any;
use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Once, OnceLock};
use std::time::{Duration, Instant};

use crate::codec::Codec;
use crate::connection::CommandError;
use crate::key;
use crate::spec::SiteSpec;
use crate::stats::warnings::Throttle;
use crate::stats::{self, Count, Counters, Outcome};

const READ_BACK_UNKNOWN: u8 = 0;
const READ_BACK_PROVEN: u8 = 1;
const READ_BACK_FAILED: u8 = 2;

#[doc(hidden)]
#[derive(Debug)]
pub struct Site {
    pub(crate) spec: SiteSpec,
    pub(crate) counters: Counters,
    /// The flight namespace, computed at the first call.
    namespace: OnceLock<u64>,
    /// The fingerprint in each codec (by id), computed at the first call in that codec.
    fingerprints: [OnceLock<u32>; crate::codec::ID_SLOTS],
    /// How the site is named in stats: the function segment of the first call's key (with
    /// ` (batch)` for a batch function).
    display: OnceLock<String>,
    /// The function segment of the first call's key, which clears select functions by.
    segment: OnceLock<String>,
    registered: Once,
    oversize_logged: AtomicBool,
    short_ttl_logged: AtomicBool,
    unrequested_logged: AtomicBool,
    /// Whether the function's values read back into its type, per codec (by id):
    /// [`READ_BACK_UNKNOWN`] until its first value in that codec is sealed, then
    /// [`READ_BACK_PROVEN`] or [`READ_BACK_FAILED`]. A type may read back in one format and not
    /// in another (one that needs `deserialize_any`, a value JSON cannot carry).
    read_back: [AtomicU8; crate::codec::ID_SLOTS],
    problems: Throttle,
    #[cfg(feature = "metrics")]
    metrics: OnceLock<crate::stats::metrics::Handles>,
    /// The local tier's store of this function in the first cache that made one (`local = N`),
    /// by that tier's id: found without a lock on every call.
    local: OnceLock<(u64, Arc<dyn Any + Send + Sync>)>,
}

/// A function's key segment, and its name in stats (with ` (batch)` for a batch function).
fn names(spec: &SiteSpec, self_type: Option<&'static str>) -> (String, String) {
    let mut segment = String::new();
    key::push_function(&mut segment, spec, self_type);
    let name = match spec.batch {
        true => format!("{segment} (batch)"),
        false => segment.clone(),
    };
    (segment, name)
}

/// The counters of the function `spec` describes (a method's: of `Self` = `self_type`): what a
/// `{fn}_stats()` companion returns.
#[doc(hidden)]
pub fn function_stats(spec: &SiteSpec, self_type: Option<&'static str>) -> stats::FunctionStats {
    let (_, name) = names(spec, self_type);
    stats::of_function(name, spec.namespace())
}

impl Site {
    pub const fn new(spec: SiteSpec) -> Self {
        Site {
            spec,
            counters: Counters::new(),
            namespace: OnceLock::new(),
            fingerprints: [const { OnceLock::new() }; crate::codec::ID_SLOTS],
            display: OnceLock::new(),
            segment: OnceLock::new(),
            registered: Once::new(),
            oversize_logged: AtomicBool::new(false),
            short_ttl_logged: AtomicBool::new(false),
            unrequested_logged: AtomicBool::new(false),
            read_back: [const { AtomicU8::new(READ_BACK_UNKNOWN) }; crate::codec::ID_SLOTS],
            problems: Throttle::new(),
            #[cfg(feature = "metrics")]
            metrics: OnceLock::new(),
            local: OnceLock::new(),
        }
    }

    /// The fingerprint of the function's keys when its values are stored in `codec`.
    pub(crate) fn fingerprint(&self, codec: Codec) -> u32 {
        *self.fingerprints[usize::from(codec.id())].get_or_init(|| self.spec.fingerprint(codec))
    }

    pub(crate) fn namespace(&self) -> u64 {
        *self.namespace.get_or_init(|| self.spec.namespace())
    }

    /// Called on every call; costs one atomic load after the first.
    pub(crate) fn register(&'static self, self_type: Option<&'static str>) {
        self.registered.call_once(|| {
            let (segment, name) = names(&self.spec, self_type);
            let segment: &'static str = self.segment.get_or_init(|| segment);
            let name: &'static str = self.display.get_or_init(|| name);
            if !stats::register(name, segment, &self.counters, self.namespace()) {
                tracing::warn!(
                    function = %name,
                    "two #[redis_cache] functions share the key namespace `{name}` and may read each \
                     other's entries; give one of them `name = \"...\"`"
                );
            }
        });
    }

    /// Whether the function stopped storing in `codec` because its first value did not read
    /// back into its type: every call then runs uncached (a `Relaxed` load per call).
    pub(crate) fn stopped(&self, codec: Codec) -> bool {
        self.read_back_in(codec).load(Relaxed) == READ_BACK_FAILED
    }

    fn read_back_in(&self, codec: Codec) -> &AtomicU8 {
        &self.read_back[usize::from(codec.id())]
    }

    /// A value of the function read back into its type, in `codec`, when it was sealed.
    pub(crate) fn read_back(&self, codec: Codec) {
        let read_back = self.read_back_in(codec);
        if read_back.load(Relaxed) == READ_BACK_UNKNOWN {
            let _ =
                read_back.compare_exchange(READ_BACK_UNKNOWN, READ_BACK_PROVEN, Relaxed, Relaxed);
        }
    }

    /// A value of the function did not read back into its type in `codec` (`err`, the decode
    /// error). If no value ever did, the type's serde sides disagree (in that format) and no entry
    /// would ever be read: the function stops storing in that codec and says so, once. Otherwise
    /// only this value is not stored.
    pub(crate) fn did_not_read_back(&self, codec: Codec, err: &dyn Display) {
        let stopped = self.read_back_in(codec).compare_exchange(
            READ_BACK_UNKNOWN,
            READ_BACK_FAILED,
            Relaxed,
            Relaxed,
        );
        match stopped {
            Ok(_) => crate::notice::unreadable(self.display(), err),
            Err(READ_BACK_FAILED) => {}
            Err(_) => self.problem(
                Count::Errors,
                "a value does not read back into its type; not stored",
                err,
            ),
        }
    }

    /// Counts how a call was answered, and traces it at `debug`: one event per call.
    pub(crate) fn answered(&self, outcome: Outcome) {
        let count = outcome.count();
        tracing::debug!(
            function = self.display(),
            outcome = count.name(),
            "redis_cache call"
        );
        self.count(count);
    }

    /// Counts `count`.
    pub(crate) fn count(&self, count: Count) {
        self.counters.bump(count);
        #[cfg(feature = "metrics")]
        self.metrics().count(count);
    }

    /// Counts `count` `n` times (a batch's items).
    pub(crate) fn count_many(&self, count: Count, n: u64) {
        if n == 0 {
            return;
        }
        self.counters.add(count, n);
        #[cfg(feature = "metrics")]
        self.metrics().count_many(count, n);
    }

    /// Counts `outcomes` (one per item of a batch call), and traces the call at `debug`.
    pub(crate) fn answered_items(&self, outcomes: &[Outcome]) {
        let mut counts = [0u64; Outcome::ALL.len()];
        for outcome in outcomes {
            counts[*outcome as usize] += 1;
        }
        for (outcome, n) in Outcome::ALL.iter().zip(counts) {
            self.count_many(outcome.count(), n);
        }
        tracing::debug!(
            function = self.display(),
            items = outcomes.len(),
            "redis_cache batch call"
        );
    }

    /// Runs one Redis round trip made for a call, recording how long it took (unless the breaker
    /// skipped it).
    pub(crate) async fn redis<T>(
        &self,
        op: impl Future<Output = Result<T, CommandError>>,
    ) -> Result<T, CommandError> {
        let started = Instant::now();
        let result = op.await;
        if !matches!(result, Err(CommandError::Unavailable)) {
            self.took_redis(started.elapsed());
        }
        result
    }

    /// Records a round trip made for many keys (a batch step) that began at `started`, unless
    /// every command of it was skipped by a breaker.
    pub(crate) fn round_trip(&self, started: Instant, failures: &[CommandError]) {
        let skipped = !failures.is_empty()
            && failures
                .iter()
                .all(|err| matches!(err, CommandError::Unavailable));
        if !skipped {
            self.took_redis(started.elapsed());
        }
    }

    fn took_redis(&self, took: Duration) {
        self.counters.redis.record(took);
        #[cfg(feature = "metrics")]
        self.metrics().redis.record(took);
    }

    /// Records one execution of the function's body, and how long it took.
    pub(crate) fn executed(&self, took: Duration) {
        self.counters.function.record(took);
        #[cfg(feature = "metrics")]
        self.metrics().function.record(took);
        self.count(Count::Executions);
    }

    /// A Redis command made for a call failed: counted in `errors` and logged (see
    /// [`Site::problem`]), unless the circuit breaker skipped it (no command was sent, and the
    /// breaker logs its own state changes).
    pub(crate) fn command_failed(&self, what: &str, err: &CommandError) {
        if !matches!(err, CommandError::Unavailable) {
            self.problem(Count::Errors, what, err);
        }
    }

    /// Counts an error and logs it at `warn`, at most once per
    /// [`WARN_INTERVAL`](crate::stats::warnings::WARN_INTERVAL) for this function; the ones held
    /// back in between are counted in the next message.
    pub(crate) fn problem(&self, count: Count, what: &str, error: &dyn Display) {
        self.count(count);
        match self.problems.admit() {
            Some(0) => tracing::warn!(function = self.display(), %error, "redis_cache: {what}"),
            Some(held_back) => tracing::warn!(
                function = self.display(),
                %error,
                held_back,
                "redis_cache: {what} ({held_back} similar problems not logged since the last message)"
            ),
            None => tracing::debug!(function = self.display(), %error, "redis_cache: {what}"),
        }
    }

    /// Logs, once per function, that a value was too large to store.
    pub(crate) fn warn_oversize(&self, bytes: usize, max_bytes: usize) {
        if !self.oversize_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                function = self.display(),
                bytes,
                max_bytes,
                "redis_cache: a value is larger than the cache's max_value_bytes and is not \
                 cached (counted in `oversize`; logged once per function)"
            );
        }
    }

    pub(crate) fn local_slot(&self) -> Option<&(u64, Arc<dyn Any + Send + Sync>)> {
        self.local.get()
    }

    /// Gives the fast slot to `tier`'s store, if no tier has it yet. `true` if it did.
    pub(crate) fn set_local_slot(&self, tier: u64, store: Arc<dyn Any + Send + Sync>) -> bool {
        self.local.set((tier, store)).is_ok()
    }

    /// A copy of `bytes` joined the local tier.
    pub(crate) fn local_added(&self, bytes: u64) {
        self.counters.local_entries.fetch_add(1, Relaxed);
        self.counters.local_bytes.fetch_add(bytes, Relaxed);
        #[cfg(feature = "metrics")]
        {
            self.metrics().local_entries.increment(1.0);
            self.metrics().local_bytes.increment(bytes as f64);
        }
    }

    /// A copy of `bytes` left the local tier.
    pub(crate) fn local_removed(&self, bytes: u64) {
        self.counters.local_entries.fetch_sub(1, Relaxed);
        self.counters.local_bytes.fetch_sub(bytes, Relaxed);
        #[cfg(feature = "metrics")]
        {
            self.metrics().local_entries.decrement(1.0);
            self.metrics().local_bytes.decrement(bytes as f64);
        }
    }

    /// Logs, once per function, that a batch function returned keys it was not asked for.
    pub(crate) fn warn_unrequested(&self, keys: usize) {
        if !self.unrequested_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                function = self.display(),
                keys,
                "redis_cache: the batch function returned keys it was not asked for; they are \
                 returned but not cached (logged once per function)"
            );
        }
    }

    /// Logs, once per function, that `ttl = ...` gave less than a second: nothing was stored.
    pub(crate) fn warn_short_ttl(&self, ttl: Duration) {
        if !self.short_ttl_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                function = self.display(),
                ?ttl,
                "redis_cache: `ttl = ...` gave less than a second; the value was returned but not \
                 cached (logged once per function)"
            );
        }
    }

    pub(crate) fn display(&self) -> &str {
        self.display
            .get()
            .map_or(self.spec.function, String::as_str)
    }

    #[cfg(feature = "metrics")]
    fn metrics(&self) -> &crate::stats::metrics::Handles {
        self.metrics
            .get_or_init(|| crate::stats::metrics::Handles::new(self.display()))
    }
}
