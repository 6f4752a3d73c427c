//! What the cache says when caching is off or bypassed, so that it is never so silently.
//!
//! Every such condition is a `tracing` event (at `warn`, or `error` when a function can never be
//! cached). A service that installed no `tracing` subscriber (it logs through `log`, or nothing
//! at all) would see none of them, so each condition is also said once per process on stderr,
//! exactly when no subscriber is installed. [`ENV_QUIET`] silences these lines.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set to anything, silences the lines the cache prints on stderr when no `tracing` subscriber
/// is installed (re-exported with the other environment variables).
pub const ENV_QUIET: &str = "REDIS_CACHE_QUIET";

/// Prints `line()` on stderr the first time `said` is seen unset, unless a `tracing` subscriber
/// is installed (it has the event) or [`ENV_QUIET`] is set.
pub(crate) fn once_on_stderr(said: &AtomicBool, line: impl FnOnce() -> String) {
    if !said.swap(true, Ordering::Relaxed) {
        on_stderr(line);
    }
}

/// Prints `line()` on stderr, unless a `tracing` subscriber is installed or [`ENV_QUIET`] is set.
fn on_stderr(line: impl FnOnce() -> String) {
    if tracing::dispatcher::has_been_set() || std::env::var_os(ENV_QUIET).is_some() {
        return;
    }
    eprintln!("redis_cache: {}", line());
}

/// The default cache's configuration (the environment) is invalid: every call runs uncached.
pub(crate) fn invalid_configuration(err: &dyn std::fmt::Display) {
    tracing::error!(error = %err, "redis_cache: invalid configuration, caching is disabled");
    static SAID: AtomicBool = AtomicBool::new(false);
    once_on_stderr(&SAID, || {
        format!(
            "invalid configuration ({err}); caching is disabled and cached functions run \
             uncached. Fix the environment, or call `Cache::from_env()` at start-up to fail \
             fast; set {ENV_QUIET}=1 to silence this line."
        )
    });
}

/// A cached function was called outside a Tokio runtime: it ran uncached.
pub(crate) fn no_runtime(function: &str) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if SAID.swap(true, Ordering::Relaxed) {
        return;
    }
    tracing::warn!(
        function,
        "redis_cache: called outside a Tokio runtime; the function runs uncached (the Redis \
         client needs Tokio). Logged once per process"
    );
    on_stderr(|| {
        format!(
            "`{function}` was called outside a Tokio runtime and ran uncached (the Redis client \
             needs Tokio; call it from a Tokio task, or from `Runtime::block_on`). Said once per \
             process; set {ENV_QUIET}=1 to silence this line."
        )
    });
}

/// Redis refuses client-side caching: local copies are served for at most `local_ttl`.
pub(crate) fn tracking_refused(err: &dyn std::fmt::Display) {
    static SAID: AtomicBool = AtomicBool::new(false);
    once_on_stderr(&SAID, || {
        format!(
            "Redis refuses client-side caching ({err}); local copies (`local = N`) are served for \
             up to `local_ttl` without Redis's confirmation that they are current. Needs \
             `CLIENT TRACKING` over RESP3 (Redis 6 or later, and the `client` command in the \
             ACL); set {ENV_QUIET}=1 to silence this line."
        )
    });
}

/// A function's stored values do not read back into its type: it stores nothing from now on.
/// Its site calls this once.
pub(crate) fn unreadable(function: &str, err: &dyn std::fmt::Display) {
    tracing::error!(
        function,
        error = %err,
        "redis_cache: a value of this function does not read back into its type: it will never \
         hit, so it stores nothing from now on and runs uncached. {UNREADABLE_CAUSES}"
    );
    on_stderr(|| {
        format!(
            "a value of `{function}` does not read back into its type (the decoder says: {err}): it would never \
             hit, so it stores nothing from now on and runs uncached (counted in `fallbacks`). \
             {UNREADABLE_CAUSES}"
        )
    });
}

/// Why a value may not read back, for [`unreadable`].
const UNREADABLE_CAUSES: &str = "The likely cause: serde attributes that differ between its \
    `Serialize` and `Deserialize` (`serialize_with` without the matching `deserialize_with`, \
    `try_from`/`from` without `into`, a `rename` or `alias` on one side only, \
    `skip_serializing_if` with the compact default codec).";
