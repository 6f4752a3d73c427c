//! Configuration: named defaults, the environment, and the [`CacheBuilder`].

use std::fmt;
use std::time::Duration;

use crate::breaker::BreakerSettings;
use crate::cache::Cache;
use crate::connection::{Connection, Timeouts};
use crate::stampede::lock::LockSettings;

/// Where the cache connects when `REDIS_URL` is not set.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
/// First segment of every key when `REDIS_CACHE_PREFIX` is not set.
pub const DEFAULT_PREFIX: &str = "rcache";
/// How long establishing a connection may take. A cache that is slower than the database behind
/// it is worse than none, so this is short.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
/// How long one Redis command may take before the call goes on without the cache.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(100);

/// Command timeouts or dropped connections in a row that open a cache's circuit breaker (one
/// failed connection attempt opens it at once).
pub const DEFAULT_BREAKER_THRESHOLD: u32 = 5;
/// How long an open circuit breaker first lets calls skip Redis before one call probes it (and
/// reconnects); each failed probe doubles it.
pub const DEFAULT_BREAKER_MIN_OPEN: Duration = Duration::from_millis(100);
/// The longest interval between probes of an open circuit breaker.
pub const DEFAULT_BREAKER_MAX_OPEN: Duration = Duration::from_secs(2);
/// Largest entry (header and payload, after compression) the cache stores. Bigger values are
/// returned but not stored, counted in `oversize` and logged once per function: one huge value
/// blocks single-threaded Redis for every other client while it is copied.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Payloads longer than this are LZ4-compressed (kept only if that saves an eighth). Measured
/// (`examples/compression.rs`): from about 3 KB compressed hits are faster even on loopback,
/// below that within noise, and entries take 3 to 19 times less memory.
pub const DEFAULT_COMPRESS_ABOVE: usize = 1024;
/// How long a per-key lock lives without renewal. Its holder renews it every third of this while
/// the function runs, so this bounds how long a crashed process blocks a key, not how long a
/// function may take.
pub const DEFAULT_LOCK_LEASE: Duration = Duration::from_secs(3);
/// How long a miss waits for another process computing the same key before it computes the
/// value itself (fail open).
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(5);
/// The fraction of the TTL by which each entry's expiry is randomly shortened when the attribute
/// does not say `jitter = ...`: entries written together (a deploy, a batch) do not all expire
/// in the same second.
pub const DEFAULT_TTL_JITTER: f64 = 0.1;

/// Environment variable holding the Redis URL (`redis://`, `rediss://` for TLS, credentials in
/// the URL).
pub const ENV_URL: &str = "REDIS_URL";
/// Environment variable holding the connect timeout in milliseconds.
pub const ENV_CONNECT_TIMEOUT_MS: &str = "REDIS_CONNECT_TIMEOUT_MS";
/// Environment variable holding the command timeout in milliseconds.
pub const ENV_COMMAND_TIMEOUT_MS: &str = "REDIS_COMMAND_TIMEOUT_MS";
/// Environment variable holding the key prefix.
pub const ENV_PREFIX: &str = "REDIS_CACHE_PREFIX";

const MAX_PREFIX_LEN: usize = 64;

/// Builds a [`Cache`]. Every setting starts at its `DEFAULT_*` constant.
///
/// ```
/// use std::time::Duration;
/// let cache = cache_runtime::Cache::builder()
///     .url("redis://127.0.0.1:6379")
///     .prefix("catalog")
///     .command_timeout(Duration::from_millis(50))
///     .build()
///     .expect("valid configuration");
/// assert_eq!(cache.prefix(), "catalog");
/// ```
#[derive(Clone)]
#[must_use]
pub struct CacheBuilder {
    url: String,
    prefix: String,
    timeouts: Timeouts,
    locks: LockSettings,
    breaker: BreakerSettings,
    limits: ValueLimits,
}

/// Sizes of stored values.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ValueLimits {
    pub max_bytes: usize,
    pub compress_above: usize,
}

impl fmt::Debug for CacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("url", &redact(&self.url))
            .field("prefix", &self.prefix)
            .field("timeouts", &self.timeouts)
            .field("locks", &self.locks)
            .field("breaker", &self.breaker)
            .field("limits", &self.limits)
            .finish()
    }
}

impl Default for CacheBuilder {
    fn default() -> Self {
        CacheBuilder {
            url: DEFAULT_URL.to_string(),
            prefix: DEFAULT_PREFIX.to_string(),
            timeouts: Timeouts {
                connect: DEFAULT_CONNECT_TIMEOUT,
                command: DEFAULT_COMMAND_TIMEOUT,
            },
            locks: LockSettings {
                lease: DEFAULT_LOCK_LEASE,
                wait: DEFAULT_LOCK_WAIT,
            },
            breaker: BreakerSettings {
                threshold: DEFAULT_BREAKER_THRESHOLD,
                min_open: DEFAULT_BREAKER_MIN_OPEN,
                max_open: DEFAULT_BREAKER_MAX_OPEN,
            },
            limits: ValueLimits {
                max_bytes: DEFAULT_MAX_VALUE_BYTES,
                compress_above: DEFAULT_COMPRESS_ABOVE,
            },
        }
    }
}

impl CacheBuilder {
    /// The defaults, overridden by whichever of `REDIS_URL`, `REDIS_CONNECT_TIMEOUT_MS`,
    /// `REDIS_COMMAND_TIMEOUT_MS` and `REDIS_CACHE_PREFIX` are set.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut builder = CacheBuilder::default();
        if let Some(url) = get(ENV_URL) {
            builder.url = url;
        }
        if let Some(prefix) = get(ENV_PREFIX) {
            builder.prefix = prefix;
        }
        let millis = |var: &'static str| -> Result<Option<Duration>, ConfigError> {
            get(var)
                .map(|value| match value.trim().parse::<u64>() {
                    Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
                    _ => Err(ConfigError::new(format!(
                        "{var}={value:?} is not a positive number of milliseconds"
                    ))),
                })
                .transpose()
        };
        if let Some(d) = millis(ENV_CONNECT_TIMEOUT_MS)? {
            builder.timeouts.connect = d;
        }
        if let Some(d) = millis(ENV_COMMAND_TIMEOUT_MS)? {
            builder.timeouts.command = d;
        }
        Ok(builder)
    }

    /// The Redis URL: `redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS (needs
    /// the `tls` feature).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// The first segment of every key, so several services can share one Redis. ASCII letters,
    /// digits and `_ - . : /`, at most 64 characters.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long establishing a connection may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.connect = timeout;
        self
    }

    /// How long one command may take.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.command = timeout;
        self
    }

    /// How long a per-key lock lives without renewal: the longest a crashed process can hold up
    /// the others on one key. Its holder renews it while computing.
    pub fn lock_lease(mut self, lease: Duration) -> Self {
        self.locks.lease = lease;
        self
    }

    /// How long a miss waits for another process computing the same key before it computes the
    /// value itself. Raise it for functions slower than [`DEFAULT_LOCK_WAIT`].
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.locks.wait = wait;
        self
    }

    /// The circuit breaker: after `failures` command timeouts or dropped connections in a row (or
    /// one failed connection attempt), calls skip Redis and run the function at once. One call
    /// probes Redis (reconnecting if needed) after `min_open`, then at doubling intervals up to
    /// `max_open`, until it answers.
    pub fn circuit_breaker(
        mut self,
        failures: u32,
        min_open: Duration,
        max_open: Duration,
    ) -> Self {
        self.breaker = BreakerSettings {
            threshold: failures.max(1),
            min_open,
            max_open: max_open.max(min_open),
        };
        self
    }

    /// The largest entry stored, in bytes (after compression); larger values are returned but not
    /// cached.
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_bytes = bytes;
        self
    }

    /// Values whose encoding is longer than this many bytes are LZ4-compressed when that saves
    /// an eighth or more; `usize::MAX` turns compression off.
    pub fn compress_above(mut self, bytes: usize) -> Self {
        self.limits.compress_above = bytes;
        self
    }

    /// Checks the configuration. Nothing connects yet: the first cached call does, so a service
    /// starts while Redis is down and uses it as soon as it answers.
    pub fn build(self) -> Result<Cache, ConfigError> {
        check_prefix(&self.prefix)?;
        if self.timeouts.connect.is_zero() || self.timeouts.command.is_zero() {
            return Err(ConfigError::new("timeouts must be greater than zero"));
        }
        if self.locks.lease < Duration::from_millis(30) {
            return Err(ConfigError::new(
                "the lock lease must be at least 30 ms: its holder renews it every third of it",
            ));
        }
        let client = redis::Client::open(self.url.as_str()).map_err(|err| {
            let hint = if self.url.starts_with("rediss://") && cfg!(not(feature = "tls")) {
                " (rediss:// needs cache-runtime's `tls` feature)"
            } else {
                ""
            };
            ConfigError::new(format!(
                "invalid Redis URL {}: {err}{hint}",
                redact(&self.url)
            ))
        })?;
        let connection = Connection::new(client, self.timeouts, self.breaker, &self.prefix);
        Ok(Cache::new(
            self.prefix,
            Some(connection),
            self.locks,
            self.limits,
        ))
    }

    pub(crate) fn build_disabled(self) -> Cache {
        Cache::new(self.prefix, None, self.locks, self.limits)
    }
}

fn check_prefix(prefix: &str) -> Result<(), ConfigError> {
    let allowed = crate::key::is_segment_char;
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN || !prefix.chars().all(allowed) {
        return Err(ConfigError::new(format!(
            "invalid key prefix {prefix:?}: use 1 to {MAX_PREFIX_LEN} ASCII letters, digits or `_ - . : /` \
             (no glob or space characters)"
        )));
    }
    Ok(())
}

/// Hides the password of a URL, for messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((auth, host)) => {
            let user = auth.split(':').next().unwrap_or("");
            let hidden = if auth.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}")
        }
        None => url.to_string(),
    }
}

/// A configuration the cache cannot work with. The message names the setting and never contains
/// a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    fn new(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |var| {
            pairs
                .iter()
                .find(|(k, _)| *k == var)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn environment_overrides_defaults() {
        let b = CacheBuilder::from_lookup(env(&[
            (ENV_URL, "redis://10.0.0.1:7000/2"),
            (ENV_PREFIX, "svc"),
            (ENV_CONNECT_TIMEOUT_MS, "40"),
        ]))
        .unwrap();
        assert_eq!(b.url, "redis://10.0.0.1:7000/2");
        assert_eq!(b.prefix, "svc");
        assert_eq!(b.timeouts.connect, Duration::from_millis(40));
        assert_eq!(b.timeouts.command, DEFAULT_COMMAND_TIMEOUT);
    }

    #[test]
    fn bad_numbers_prefixes_and_urls_are_errors() {
        assert!(CacheBuilder::from_lookup(env(&[(ENV_COMMAND_TIMEOUT_MS, "soon")])).is_err());
        assert!(CacheBuilder::from_lookup(env(&[(ENV_COMMAND_TIMEOUT_MS, "0")])).is_err());
        assert!(CacheBuilder::default().prefix("a*b").build().is_err());
        assert!(CacheBuilder::default().prefix("").build().is_err());
        let err = CacheBuilder::default()
            .url("http://user:hunter2@host")
            .build()
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(redact("redis://u:p@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact("redis://:p@h"), "redis://:***@h");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }
}
