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
/// Whether a miss returns before its store has landed. Off: the caller waits for the store (one
/// round trip), so a value is in Redis when the call returns, even in a process that exits right
/// after it. See [`CacheBuilder::background_stores`].
pub const DEFAULT_BACKGROUND_STORES: bool = false;

/// Environment variable holding the Redis URL (`redis://`, `rediss://` for TLS, credentials in
/// the URL).
pub const ENV_URL: &str = "REDIS_URL";
/// Environment variable listing the nodes of a Redis Cluster, `host:port,host:port,...` (or
/// URLs, `rediss://` for TLS); a few are enough, the rest are discovered. Selects cluster mode.
pub const ENV_CLUSTER_URLS: &str = "REDIS_CLUSTER_URLS";
/// Environment variable listing Sentinel addresses, `host:port,...` (or URLs, with the
/// sentinels' own credentials). Selects Sentinel mode, with [`ENV_SENTINEL_MASTER`].
pub const ENV_SENTINEL_URLS: &str = "REDIS_SENTINEL_URLS";
/// Environment variable naming the primary the sentinels monitor (`sentinel monitor <name>`).
pub const ENV_SENTINEL_MASTER: &str = "REDIS_SENTINEL_MASTER";
/// Environment variable holding the URL of a read-only replica endpoint: lookups go there,
/// everything else to the primary.
pub const ENV_READER_URL: &str = "REDIS_READER_URL";
/// Environment variable holding the ACL username for the Redis servers (overrides the URLs').
pub const ENV_USERNAME: &str = "REDIS_USERNAME";
/// Environment variable holding the password for the Redis servers (overrides the URLs').
pub const ENV_PASSWORD: &str = "REDIS_PASSWORD";
/// Environment variable naming a PEM file of CA certificates to trust for TLS, instead of the
/// system's and the web's roots (`tls` feature).
pub const ENV_TLS_CA_FILE: &str = "REDIS_TLS_CA_FILE";
/// Environment variable naming the PEM client certificate for mutual TLS (`tls` feature), with
/// [`ENV_TLS_KEY_FILE`].
pub const ENV_TLS_CERT_FILE: &str = "REDIS_TLS_CERT_FILE";
/// Environment variable naming the PEM private key of the client certificate (`tls` feature).
pub const ENV_TLS_KEY_FILE: &str = "REDIS_TLS_KEY_FILE";
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
    endpoints: Endpoints,
    prefix: String,
    timeouts: Timeouts,
    locks: LockSettings,
    breaker: BreakerSettings,
    limits: ValueLimits,
    background_stores: bool,
}

/// Sizes of stored values.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ValueLimits {
    pub max_bytes: usize,
    pub compress_above: usize,
}

/// The servers of one deployment.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Servers {
    Single(String),
    Cluster(Vec<String>),
    Sentinel {
        sentinels: Vec<String>,
        master: String,
    },
}

/// Where the cache's Redis is and how to log in. `Debug` shows no password, key or certificate.
#[derive(Clone)]
pub(crate) struct Endpoints {
    pub servers: Servers,
    /// A replica endpoint for lookups.
    pub reader: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    #[cfg(feature = "tls")]
    pub tls: TlsFiles,
}

impl fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls = |urls: &[String]| urls.iter().map(|u| redact(u)).collect::<Vec<_>>();
        let mut out = f.debug_struct("Endpoints");
        match &self.servers {
            Servers::Single(url) => out.field("url", &redact(url)),
            Servers::Cluster(nodes) => out.field("cluster", &urls(nodes)),
            Servers::Sentinel { sentinels, master } => out
                .field("sentinels", &urls(sentinels))
                .field("master", master),
        };
        out.field("reader", &self.reader.as_deref().map(redact))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"));
        #[cfg(feature = "tls")]
        out.field("tls", &self.tls);
        out.finish()
    }
}

/// Certificates for TLS, as PEM bytes.
#[cfg(feature = "tls")]
#[derive(Clone, Default)]
pub(crate) struct TlsFiles {
    ca: Option<Vec<u8>>,
    client: Option<(Vec<u8>, Vec<u8>)>,
}

#[cfg(feature = "tls")]
impl TlsFiles {
    /// redis-rs's form, when anything is set (otherwise the default roots apply).
    pub(crate) fn certificates(&self) -> Option<redis::TlsCertificates> {
        if self.ca.is_none() && self.client.is_none() {
            return None;
        }
        Some(redis::TlsCertificates {
            client_tls: self
                .client
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: self.ca.clone(),
        })
    }
}

#[cfg(feature = "tls")]
impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles")
            .field("custom_ca", &self.ca.is_some())
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
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
            },
            limits: ValueLimits {
                max_bytes: DEFAULT_MAX_VALUE_BYTES,
                compress_above: DEFAULT_COMPRESS_ABOVE,
            },
            background_stores: DEFAULT_BACKGROUND_STORES,
        }
    }
}

impl CacheBuilder {
    /// The defaults, overridden by the environment:
    ///
    /// - where Redis is: one of [`ENV_URL`] (`REDIS_URL`), [`ENV_CLUSTER_URLS`]
    ///   (`REDIS_CLUSTER_URLS`), or [`ENV_SENTINEL_URLS`] with [`ENV_SENTINEL_MASTER`]; setting
    ///   two of them is an error;
    /// - [`ENV_READER_URL`], [`ENV_USERNAME`], [`ENV_PASSWORD`];
    /// - [`ENV_TLS_CA_FILE`], [`ENV_TLS_CERT_FILE`], [`ENV_TLS_KEY_FILE`] (read now; `tls`
    ///   feature);
    /// - `REDIS_CONNECT_TIMEOUT_MS`, `REDIS_COMMAND_TIMEOUT_MS` and `REDIS_CACHE_PREFIX`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut builder = CacheBuilder::default();
        let get = |var: &str| get(var).filter(|value| !value.trim().is_empty());
        let url = get(ENV_URL);
        let cluster = get(ENV_CLUSTER_URLS);
        let sentinels = get(ENV_SENTINEL_URLS);
        let chosen = [
            (ENV_URL, &url),
            (ENV_CLUSTER_URLS, &cluster),
            (ENV_SENTINEL_URLS, &sentinels),
        ];
        let set: Vec<&str> = chosen
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| *k)
            .collect();
        if set.len() > 1 {
            return Err(ConfigError::new(format!(
                "{} are all set: set only one of {ENV_URL}, {ENV_CLUSTER_URLS} and {ENV_SENTINEL_URLS}",
                set.join(" and ")
            )));
        }
        if let Some(url) = url {
            builder = builder.url(url);
        }
        if let Some(nodes) = cluster {
            builder = builder.cluster(split_list(&nodes));
        }
        if let Some(list) = sentinels {
            let master = get(ENV_SENTINEL_MASTER).ok_or_else(|| {
                ConfigError::new(format!(
                    "{ENV_SENTINEL_URLS} is set but {ENV_SENTINEL_MASTER} is not: name the primary the sentinels monitor"
                ))
            })?;
            builder = builder.sentinel(split_list(&list), master);
        }
        builder.endpoints.reader = get(ENV_READER_URL);
        builder.endpoints.username = get(ENV_USERNAME);
        builder.endpoints.password = get(ENV_PASSWORD);
        let files = [ENV_TLS_CA_FILE, ENV_TLS_CERT_FILE, ENV_TLS_KEY_FILE]
            .map(|var| get(var).map(|path| (var, path)));
        #[cfg(not(feature = "tls"))]
        if let Some((var, _)) = files.iter().flatten().next() {
            return Err(ConfigError::new(format!(
                "{var} is set, but TLS certificates need cache-runtime's `tls` feature"
            )));
        }
        #[cfg(feature = "tls")]
        {
            let read = |file: &Option<(&str, String)>| -> Result<Option<Vec<u8>>, ConfigError> {
                file.as_ref()
                    .map(|(var, path)| {
                        std::fs::read(path).map_err(|err| {
                            ConfigError::new(format!("{var}={path:?} cannot be read: {err}"))
                        })
                    })
                    .transpose()
            };
            let [ca, cert, key] = &files;
            builder.endpoints.tls.ca = read(ca)?;
            builder.endpoints.tls.client = match (read(cert)?, read(key)?) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => {
                    return Err(ConfigError::new(format!(
                        "set both {ENV_TLS_CERT_FILE} and {ENV_TLS_KEY_FILE}, or neither"
                    )));
                }
            };
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
                .map_err(ConfigError::new)?;
        Ok(Cache::new(
            self.prefix,
            Some(connection),
            self.locks,
            self.limits,
            self.background_stores,
        ))
    }

    pub(crate) fn build_disabled(self) -> Cache {
        Cache::new(
            self.prefix,
            None,
            self.locks,
            self.limits,
            self.background_stores,
        )
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

/// `host:port` as a URL; URLs unchanged.
fn with_scheme(node: String) -> String {
    let node = node.trim();
    if node.contains("://") {
        node.to_string()
    } else {
        format!("redis://{node}")
    }
}

/// A comma-separated list, without empty entries.
fn split_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Hides the password of a URL, for messages.
pub(crate) fn redact(url: &str) -> String {
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
        assert!(b.endpoints.servers == Servers::Single("redis://10.0.0.1:7000/2".into()));
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
    fn the_environment_selects_cluster_or_sentinel_and_rejects_two_at_once() {
        let b = CacheBuilder::from_lookup(env(&[(
            ENV_CLUSTER_URLS,
            "10.0.0.1:7000, rediss://10.0.0.2:7001,",
        )]))
        .unwrap();
        let nodes = vec![
            "redis://10.0.0.1:7000".into(),
            "rediss://10.0.0.2:7001".into(),
        ];
        assert!(b.endpoints.servers == Servers::Cluster(nodes));

        let b = CacheBuilder::from_lookup(env(&[
            (ENV_SENTINEL_URLS, "s1:26379,s2:26379"),
            (ENV_SENTINEL_MASTER, "cache"),
            (ENV_READER_URL, "redis://replica:6379"),
            (ENV_USERNAME, "app"),
            (ENV_PASSWORD, "hunter2"),
        ]))
        .unwrap();
        assert!(
            matches!(&b.endpoints.servers, Servers::Sentinel { sentinels, master }
            if sentinels.len() == 2 && master == "cache")
        );
        assert_eq!(b.endpoints.reader.as_deref(), Some("redis://replica:6379"));
        assert!(!format!("{b:?}").contains("hunter2"));

        let two =
            CacheBuilder::from_lookup(env(&[(ENV_URL, "redis://a"), (ENV_CLUSTER_URLS, "b:1")]));
        assert!(two.unwrap_err().to_string().contains("set only one"));
        let no_master = CacheBuilder::from_lookup(env(&[(ENV_SENTINEL_URLS, "s1:26379")]));
        assert!(
            no_master
                .unwrap_err()
                .to_string()
                .contains(ENV_SENTINEL_MASTER)
        );
        assert!(
            CacheBuilder::default()
                .cluster(Vec::<String>::new())
                .build()
                .is_err()
        );
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn certificate_files_without_the_tls_feature_are_an_error() {
        let err = CacheBuilder::from_lookup(env(&[(ENV_TLS_CA_FILE, "/ca.pem")])).unwrap_err();
        assert!(err.to_string().contains("`tls` feature"), "{err}");
    }

    #[cfg(feature = "tls")]
    #[test]
    fn an_unreadable_certificate_file_is_an_error_naming_it() {
        let err = CacheBuilder::from_lookup(env(&[(ENV_TLS_CA_FILE, "/nonexistent/ca.pem")]))
            .unwrap_err();
        assert!(err.to_string().contains(ENV_TLS_CA_FILE), "{err}");
    }

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(redact("redis://u:p@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact("redis://:p@h"), "redis://:***@h");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }
}
