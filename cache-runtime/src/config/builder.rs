//! [`CacheBuilder`]: the settings of a [`Cache`], checked when it is built.

use std::fmt;
use std::time::Duration;

use super::ConfigError;
use super::defaults::*;
use crate::breaker::BreakerSettings;
use crate::cache::Cache;
use crate::codec::{Codec, Limits};
#[cfg(feature = "tls")]
use crate::connection::TlsFiles;
use crate::connection::{Connection, Endpoints, Servers, Timeouts, with_scheme};
use crate::stampede::lock::LockSettings;

const MAX_PREFIX_LEN: usize = 64;

/// Builds a [`Cache`]. Every setting starts at its `DEFAULT_*` constant.
///
/// ```
/// use std::time::Duration;
/// let cache = redis_cached::Cache::builder()
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
    pub(super) endpoints: Endpoints,
    pub(super) prefix: String,
    pub(super) timeouts: Timeouts,
    pub(super) locks: LockSettings,
    pub(super) breaker: BreakerSettings,
    pub(super) limits: ValueLimits,
    pub(super) background_stores: bool,
    pub(super) local_max_bytes: usize,
    pub(super) auto_pipeline: bool,
}

/// How values are stored (their codec, their sizes), and the size of the commands of a batch
/// call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ValueLimits {
    /// The codec of the functions that do not choose one (`codec = "..."`).
    pub codec: Codec,
    pub max_bytes: usize,
    pub compress_above: usize,
    /// Keys per command (or pipeline) of a batch call.
    pub batch_chunk: usize,
    /// What decoding one entry may take (from `max_bytes`).
    pub decode: Limits,
}

impl fmt::Debug for CacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("timeouts", &self.timeouts)
            .field("locks", &self.locks)
            .field("breaker", &self.breaker)
            .field("limits", &self.limits)
            .field("background_stores", &self.background_stores)
            .field("auto_pipeline", &self.auto_pipeline)
            .field("local_max_bytes", &self.local_max_bytes)
            .finish()
    }
}

impl Default for CacheBuilder {
    fn default() -> Self {
        CacheBuilder {
            endpoints: Endpoints {
                servers: Servers::Single(DEFAULT_URL.to_string()),
                reader: None,
                username: None,
                password: None,
                #[cfg(feature = "tls")]
                tls: TlsFiles::default(),
            },
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
                on_open: super::env::say_unreachable,
            },
            limits: ValueLimits {
                codec: Codec::DEFAULT,
                max_bytes: DEFAULT_MAX_VALUE_BYTES,
                compress_above: DEFAULT_COMPRESS_ABOVE,
                batch_chunk: DEFAULT_BATCH_CHUNK,
                decode: Limits::for_values(DEFAULT_MAX_VALUE_BYTES),
            },
            background_stores: DEFAULT_BACKGROUND_STORES,
            auto_pipeline: DEFAULT_AUTO_PIPELINE,
            local_max_bytes: DEFAULT_LOCAL_MAX_BYTES,
        }
    }
}

impl CacheBuilder {
    /// One Redis server (or a managed primary endpoint):
    /// `redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS (needs the `tls`
    /// feature). Replaces a [`cluster`](Self::cluster) or [`sentinel`](Self::sentinel) setting.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.endpoints.servers = Servers::Single(url.into());
        self
    }

    /// A Redis Cluster, by some of its nodes (`host:port` or URLs; `rediss://` for TLS): the
    /// others are discovered, and failovers and resharding (`MOVED`, `ASK`) are followed.
    /// Replaces a [`url`](Self::url) or [`sentinel`](Self::sentinel) setting.
    pub fn cluster<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let nodes = nodes
            .into_iter()
            .map(|node| with_scheme(node.into()))
            .collect();
        self.endpoints.servers = Servers::Cluster(nodes);
        self
    }

    /// A primary found through Redis Sentinel: the sentinels' addresses (`host:port` or URLs,
    /// with the sentinels' own credentials if they need them) and the name they monitor it
    /// under. After a failover, the cache reconnects to the primary the sentinels name.
    /// Replaces a [`url`](Self::url) or [`cluster`](Self::cluster) setting.
    pub fn sentinel<I, S>(mut self, sentinels: I, master_name: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let sentinels = sentinels
            .into_iter()
            .map(|s| with_scheme(s.into()))
            .collect();
        self.endpoints.servers = Servers::Sentinel {
            sentinels,
            master: master_name.into(),
        };
        self
    }

    /// A read-only replica endpoint (as managed services offer next to the primary's): lookups
    /// (`GET`) go there, locks, stores and invalidations to the primary. Replication is
    /// asynchronous, so a lookup right after a store may miss; the miss then finds the value
    /// (or the lock) on the primary, so it is not computed twice. While the reader's circuit
    /// breaker is open, lookups go to the primary.
    pub fn reader_url(mut self, url: impl Into<String>) -> Self {
        self.endpoints.reader = Some(url.into());
        self
    }

    /// The ACL user and password for every Redis server (overriding those in the URLs). Never
    /// printed: `Debug`, logs and errors show `***`.
    pub fn credentials(mut self, username: Option<&str>, password: &str) -> Self {
        self.endpoints.username = username.map(str::to_string);
        self.endpoints.password = Some(password.to_string());
        self
    }

    /// Trust these PEM CA certificates for TLS, instead of the system's and the web's roots.
    #[cfg(feature = "tls")]
    pub fn tls_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.endpoints.tls.ca = Some(pem.into());
        self
    }

    /// Present this PEM client certificate and private key (mutual TLS).
    #[cfg(feature = "tls")]
    pub fn tls_client_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.endpoints.tls.client = Some((cert.into(), key.into()));
        self
    }

    /// The first segment of every key, so several services can share one Redis. ASCII letters,
    /// digits and `_ - . /`, at most 64 characters. Not `:`, which ends the prefix in every key:
    /// `shop` would otherwise clear, and hear the writes of, a cache prefixed `shop:eu`.
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
            on_open: self.breaker.on_open,
        };
        self
    }

    /// The format values are stored in (default [`Codec::DEFAULT`]: bincode when its feature is
    /// on), for every function of this cache that does not name its own with `codec = "..."`.
    ///
    /// The codec is part of every key's fingerprint: changing it moves the functions to new keys
    /// (a cold cache for them, never a decode error), and processes on different codecs do not
    /// share entries. Each codec is a cargo feature; see [`Codec`].
    ///
    /// ```
    /// # #[cfg(feature = "json")] {
    /// use redis_cached::{Cache, Codec};
    /// let cache = Cache::builder().codec(Codec::Json).build().expect("valid configuration");
    /// # }
    /// ```
    pub fn codec(mut self, codec: Codec) -> Self {
        self.limits.codec = codec;
        self
    }

    /// The largest entry stored, in bytes (after compression); larger values are returned but not
    /// cached.
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_bytes = bytes;
        self.limits.decode = Limits::for_values(bytes);
        self
    }

    /// Values whose encoding is longer than this many bytes are LZ4-compressed when that saves
    /// an eighth or more; `usize::MAX` turns compression off.
    pub fn compress_above(mut self, bytes: usize) -> Self {
        self.limits.compress_above = bytes;
        self
    }

    /// How many keys one command of a batch call carries (default [`DEFAULT_BATCH_CHUNK`]): a
    /// call for more keys sends several `MGET`s (or pipelines) at once, so none holds Redis for
    /// long while other clients wait. At least 1.
    pub fn batch_chunk(mut self, keys: usize) -> Self {
        self.limits.batch_chunk = keys;
        self
    }

    /// Whether a miss returns before its value is stored (default
    /// [`DEFAULT_BACKGROUND_STORES`]: no).
    ///
    /// By default the caller of a miss waits for the store, which releases the key's lock in the
    /// same round trip: when the call returns, the value is in Redis (or the store failed and was
    /// logged). With `true`, the store runs in a spawned task and the caller saves that round trip;
    /// with `lock = false` on the function too, a miss then costs its caller the lookup alone.
    ///
    /// The price: a store still pending when the process exits is lost. A short-lived program (a
    /// CLI, a cron job, a test, a serverless handler) must await [`Cache::flush`] before it
    /// exits, and a service at shutdown, after its last calls. Other processes see the value a
    /// round trip later, and meanwhile find the key's lock held and wait for its release as for
    /// any computation in progress.
    pub fn background_stores(mut self, background: bool) -> Self {
        self.background_stores = background;
        self
    }

    /// Whether the lookups this process makes at the same time share one pipeline (default
    /// [`DEFAULT_AUTO_PIPELINE`]: yes).
    ///
    /// A lookup made while no other is in flight is sent at once, alone. One made while another
    /// is in flight waits for the rest of the Tokio scheduler's turn, and every lookup made
    /// meanwhile goes out with it in one pipeline: one write, one read and one wake of the
    /// connection's task for all of them. Under concurrency that makes a hit cheaper than a raw
    /// `GET` through redis-rs (see the performance page in the repository's `docs/`); each caller
    /// still gets its own reply, and its own error. With `false`, every lookup is its own `GET`.
    /// On a cluster, each primary pipelines the lookups of its own keys.
    pub fn auto_pipeline(mut self, on: bool) -> Self {
        self.auto_pipeline = on;
        self
    }

    /// The memory the local tier (functions with `local = N`) may take in this cache, in bytes
    /// (default [`DEFAULT_LOCAL_MAX_BYTES`]). A value's size is estimated from its stored
    /// (encoded, possibly compressed) size plus a fixed overhead per entry, so the decoded values
    /// may take somewhat more. A value that does not fit is served from Redis instead of being
    /// kept; `0` turns the local tier off for this cache.
    pub fn local_max_bytes(mut self, bytes: usize) -> Self {
        self.local_max_bytes = bytes;
        self
    }

    /// Checks the configuration. Nothing connects yet: the first cached call does, so a service
    /// starts while Redis is down and uses it as soon as it answers.
    pub fn build(mut self) -> Result<Cache, ConfigError> {
        check_prefix(&self.prefix)?;
        // No setting may overflow the clock arithmetic done with it (`Duration::MAX` is a
        // valid argument, and means "as long as can be").
        for duration in [
            &mut self.timeouts.connect,
            &mut self.timeouts.command,
            &mut self.locks.lease,
            &mut self.locks.wait,
            &mut self.breaker.min_open,
            &mut self.breaker.max_open,
        ] {
            *duration = (*duration).min(MAX_SETTING);
        }
        if self.timeouts.connect.is_zero() || self.timeouts.command.is_zero() {
            return Err(ConfigError::new("timeouts must be greater than zero"));
        }
        if self.limits.batch_chunk == 0 {
            return Err(ConfigError::new("batch_chunk must be at least 1 key"));
        }
        if self.locks.lease < Duration::from_millis(30) {
            return Err(ConfigError::new(
                "the lock lease must be at least 30 ms: its holder renews it every third of it",
            ));
        }
        match &self.endpoints.servers {
            Servers::Cluster(nodes)
            | Servers::Sentinel {
                sentinels: nodes, ..
            } if nodes.is_empty() => {
                return Err(ConfigError::new("no Redis nodes given"));
            }
            Servers::Sentinel { master, .. } if master.is_empty() => {
                return Err(ConfigError::new("the Sentinel master name is empty"));
            }
            _ => {}
        }
        let connection =
            Connection::open(&self.endpoints, self.timeouts, self.breaker, &self.prefix)
                .map_err(ConfigError::new)?
                .with_auto_pipeline(self.auto_pipeline);
        Ok(Cache::new(
            self.prefix,
            Some(connection),
            self.locks,
            self.limits,
            self.background_stores,
            self.local_max_bytes,
        ))
    }

    pub(crate) fn build_disabled(self) -> Cache {
        Cache::new(
            self.prefix,
            None,
            self.locks,
            self.limits,
            self.background_stores,
            0,
        )
    }
}

/// The longest a duration setting is taken to be: a day. Longer ones (`Duration::MAX` among
/// them) are shortened to it, so no deadline computed from them overflows.
const MAX_SETTING: Duration = Duration::from_secs(24 * 3600);

/// A prefix is one segment of the key: no `:`, which ends it. Otherwise the keys of a cache with
/// prefix `shop` would include those of a cache with prefix `shop:eu` (`shop:eu:...` is
/// `shop:` + something), and its clears and its local tier's invalidation channel would reach
/// them.
fn check_prefix(prefix: &str) -> Result<(), ConfigError> {
    let allowed = |c: char| crate::key::is_segment_char(c) && c != ':';
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN || !prefix.chars().all(allowed) {
        let hint = match prefix.contains(':') {
            true => {
                "; `:` ends the prefix in every key, so a cache with prefix `shop` would reach \
                 the keys of one with `shop:eu`: write `shop-eu` or `shop.eu`"
            }
            false => " (no glob or space characters)",
        };
        return Err(ConfigError::new(format!(
            "invalid key prefix {prefix:?}: use 1 to {MAX_PREFIX_LEN} ASCII letters, digits or \
             `_ - . /`{hint}"
        )));
    }
    Ok(())
}
