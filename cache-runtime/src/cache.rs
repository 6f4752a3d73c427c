//! The [`Cache`] handle and the process-wide default.

use std::fmt;
use std::sync::{Arc, OnceLock};

use crate::breaker::{BreakerStats, NodeBreaker};
use crate::codec::Codec;
use crate::config::{CacheBuilder, ConfigError, DEFAULT_CONNECT_TIMEOUT, ValueLimits};
use crate::connection::Connection;
use crate::health::{HealthError, RedisHealth};
use crate::local::LocalTier;
use crate::spec::SiteSpec;
use crate::stampede::lock::{LockSettings, Locks};
use crate::stampede::notify::Notifier;
use crate::stampede::refreshing::Refreshing;
use crate::stampede::single_flight::Flights;
use crate::tasks::Tasks;

/// A handle to one Redis cache: cheap to clone (an `Arc`), shared by every function that uses it.
///
/// Functions use the [default](default_cache) unless their attribute says
/// `cache = <expression>`, where the expression dereferences to a `Cache` (a `static`
/// `LazyLock<Cache>`, a field of `self`, or a parameter listed in `skip`).
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    prefix: String,
    /// `None`: caching is disabled (bad configuration); every call runs the function.
    connection: Option<Arc<Connection>>,
    /// The per-key locks; `None` when disabled.
    locks: Option<Locks>,
    /// The pub/sub wake-ups of the callers waiting for another process's lock (connected at
    /// the first wait).
    notifier: Notifier,
    /// The keys this process refreshes in the background (`refresh = "background"`).
    refreshing: Refreshing,
    limits: ValueLimits,
    flights: Flights,
    /// Stores, refreshes and releases of abandoned locks, running in spawned tasks.
    tasks: Tasks,
    /// A miss returns before its store lands ([`CacheBuilder::background_stores`]).
    background_stores: bool,
    /// Decoded copies of the entries of functions with `local = N`; `None` when disabled.
    local: Option<LocalTier>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("prefix", &self.inner.prefix)
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

impl Cache {
    /// A builder starting from the `DEFAULT_*` constants.
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
    }

    /// The cache the environment describes (see [`CacheBuilder::from_env`]).
    pub fn from_env() -> Result<Cache, ConfigError> {
        CacheBuilder::from_env()?.build()
    }

    /// A cache that never touches Redis: every call runs the function.
    pub fn disabled() -> Cache {
        CacheBuilder::default().build_disabled()
    }

    pub(crate) fn new(
        prefix: String,
        connection: Option<Connection>,
        locks: LockSettings,
        limits: ValueLimits,
        background_stores: bool,
        local_max_bytes: usize,
    ) -> Cache {
        let tasks = Tasks::default();
        let connection = connection.map(Arc::new);
        let locks = connection
            .as_ref()
            .map(|conn| Locks::new(conn.clone(), locks, tasks.clone()));
        let notifier = Notifier::new(
            connection
                .as_ref()
                .map_or(DEFAULT_CONNECT_TIMEOUT, |conn| conn.timeouts().connect),
        );
        let local = (connection.is_some() && local_max_bytes > 0)
            .then(|| LocalTier::new(&prefix, local_max_bytes));
        Cache {
            inner: Arc::new(Inner {
                prefix,
                connection,
                locks,
                notifier,
                refreshing: Refreshing::default(),
                limits,
                flights: Flights::default(),
                tasks,
                background_stores,
                local,
            }),
        }
    }

    /// The first segment of this cache's keys.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The codec of the functions that do not name their own ([`CacheBuilder::codec`]).
    pub fn codec(&self) -> Codec {
        self.inner.limits.codec
    }

    /// The codec `spec`'s function stores its values in here: its own, else this cache's.
    pub(crate) fn codec_for(&self, spec: &SiteSpec) -> Codec {
        spec.codec.unwrap_or(self.inner.limits.codec)
    }

    /// `false` for [`Cache::disabled`] and for a default cache whose configuration was invalid.
    pub fn is_enabled(&self) -> bool {
        self.inner.connection.is_some()
    }

    /// The circuit breakers summed up: open while the server's is (on a Redis Cluster, while
    /// the slot map's or one current primary's is; then only that primary's keys skip Redis),
    /// and how often they opened and closed. The reader endpoint's is not in it (while it is
    /// open, lookups go to the primary). A disabled cache's is always closed.
    /// [`Cache::breakers`] has each one.
    pub fn breaker(&self) -> BreakerStats {
        match self.connection() {
            Some(conn) => conn.breaker_totals(),
            None => BreakerStats::sum(&[]),
        }
    }

    /// Each circuit breaker: one for a single server or a Sentinel primary (and one for the
    /// reader endpoint, when configured); on a Redis Cluster, one per current primary, by the
    /// address the cluster announces, after the slot map's (reading `CLUSTER SLOTS` from the
    /// configured nodes, named after them). Empty for a disabled cache.
    pub fn breakers(&self) -> Vec<NodeBreaker> {
        let Some(conn) = self.connection() else {
            return Vec::new();
        };
        conn.breakers()
            .into_iter()
            .map(|(node, stats)| NodeBreaker { node, stats })
            .collect()
    }

    /// Memory, eviction policy and evictions of the server behind this cache, read with `INFO`
    /// (subject to the command timeout and the circuit breaker). [`RedisHealth::warnings`] says
    /// what to fix; the same check is logged once when the cache first connects.
    pub async fn health(&self) -> Result<RedisHealth, HealthError> {
        let conn = self
            .connection()
            .ok_or_else(|| HealthError("caching is disabled".into()))?;
        conn.health()
            .await
            .map_err(|err| HealthError(err.to_string()))
    }

    pub(crate) fn connection(&self) -> Option<&Connection> {
        self.inner.connection.as_deref()
    }

    pub(crate) fn shared_connection(&self) -> Option<&Arc<Connection>> {
        self.inner.connection.as_ref()
    }

    pub(crate) fn local(&self) -> Option<&LocalTier> {
        self.inner.local.as_ref()
    }

    /// Changes whenever this cache's local tier gains or loses its invalidation channel, or an
    /// announcement removes copies, and holds the instant of the last change (unix
    /// microseconds); `None` without a local tier. For tests, which await these events instead
    /// of sleeping, and for the bench, which times them.
    #[doc(hidden)]
    pub fn local_events(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.local().map(LocalTier::changes)
    }

    /// Whether this cache's local tier is hearing every change from Redis right now (its
    /// invalidation channel is up).
    #[doc(hidden)]
    pub fn local_coherent(&self) -> bool {
        self.local().is_some_and(LocalTier::is_coherent)
    }

    /// How many keys Redis has announced to this cache's local tier (its invalidation channel)
    /// since it started; `None` without a local tier. For tests and the fleet benchmark: a
    /// process is told only of the functions it keeps copies of.
    #[doc(hidden)]
    pub fn local_announcements(&self) -> Option<u64> {
        self.local().map(LocalTier::announcements)
    }

    /// How many functions Redis tracks for this cache's local tier: reads of their keys that
    /// begin from then on are covered by the channel. Changes with an event of
    /// [`Cache::local_events`]. For tests.
    #[doc(hidden)]
    pub fn local_tracked_functions(&self) -> Option<usize> {
        self.local().map(LocalTier::tracked_routes)
    }

    pub(crate) fn locks(&self) -> Option<&Locks> {
        self.inner.locks.as_ref()
    }

    pub(crate) fn limits(&self) -> ValueLimits {
        self.inner.limits
    }

    pub(crate) fn flights(&self) -> &Flights {
        &self.inner.flights
    }

    pub(crate) fn tasks(&self) -> &Tasks {
        &self.inner.tasks
    }

    pub(crate) fn notifier(&self) -> &Notifier {
        &self.inner.notifier
    }

    pub(crate) fn refreshing(&self) -> &Refreshing {
        &self.inner.refreshing
    }

    pub(crate) fn background_stores(&self) -> bool {
        self.inner.background_stores
    }

    /// Waits until the work this cache started in the background before this call has landed
    /// (or failed): the stores of [`background_stores`](CacheBuilder::background_stores), the
    /// stores of callers that were cancelled while storing, and the release of locks whose
    /// holder was cancelled or panicked. Work started after the call is not waited for, so a
    /// flush ends under steady load too.
    ///
    /// From blocking code (`redis_cached::block_on(cache.flush())`) it waits for the work of
    /// blocking calls only: that of `async` calls may be on a runtime the caller's thread holds.
    ///
    /// By default a miss returns after its store, so a program that only calls cached functions
    /// needs no flush. With `background_stores(true)`, await this at shutdown, after the last
    /// calls, or their values are lost with the process.
    pub async fn flush(&self) {
        self.inner.tasks.settled().await;
    }

    /// Calls of this cache currently in flight in this process (single-flight leaders); zero
    /// when idle. For tests and leak checks.
    #[doc(hidden)]
    pub fn in_flight(&self) -> usize {
        self.inner.flights.len()
    }
}

static DEFAULT: OnceLock<Cache> = OnceLock::new();

/// Installs `cache` as the default of every function without `cache = ...`.
///
/// Call it at start-up, before the first cached call. Returns the cache back as `Err` if a
/// default is already in place (installed before, or created from the environment by a call).
pub fn set_default(cache: Cache) -> Result<(), Cache> {
    DEFAULT.set(cache)
}

/// The default cache: the one given to [`set_default`], or else one built from the environment on
/// first use. An invalid environment is logged once and yields a disabled cache, so the service
/// runs uncached instead of failing.
pub fn default_cache() -> &'static Cache {
    DEFAULT.get_or_init(|| match Cache::from_env() {
        Ok(cache) => cache,
        Err(err) => {
            crate::notice::invalid_configuration(&err);
            Cache::disabled()
        }
    })
}
