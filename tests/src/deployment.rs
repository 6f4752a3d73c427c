//! One test suite, several deployments: the suites in `tests/tests/suites/` run against a single
//! server and against a cluster, through this one handle.
//!
//! A single server is started per test. A cluster takes seconds to form, so the tests of one test
//! binary share one ([`shared_cluster`]), each in a namespace of its own: its caches' prefixes
//! (and so its keys, lock channels and tags) begin with it, and the inspection methods see only
//! it. A test that kills, freezes or restarts servers, or reads their global counters, asks for
//! a deployment of its own (`start_own()` in a suite).

use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use redis_cached::{Cache, CacheBuilder};

use crate::RedisServer;
use crate::cluster::RedisCluster;

/// Which deployment a suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Single,
    Cluster,
}

/// A server or a cluster the test owns, or its namespace on the shared cluster.
#[derive(Debug)]
pub enum Deployment {
    Single(RedisServer),
    Cluster(RedisCluster),
    Shared {
        cluster: Arc<RedisCluster>,
        /// Begins every prefix and key of this test: `t<n>-`.
        namespace: String,
    },
}

/// The cluster the tests of this process share, started by the first one that asks. It lives in
/// a `static` (never dropped): its reaper stops it when the process ends.
pub fn shared_cluster() -> Arc<RedisCluster> {
    static SHARED: Mutex<Option<(Arc<RedisCluster>, Child)>> = Mutex::new(None);
    let mut shared = SHARED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((cluster, _)) = shared.as_ref() {
        return cluster.clone();
    }
    let cluster = Arc::new(RedisCluster::start());
    let reaper = cluster.reap_at_exit();
    *shared = Some((cluster.clone(), reaper));
    cluster
}

impl Deployment {
    /// A deployment for one test: its own server, or a namespace on the shared cluster.
    pub fn start(topology: Topology) -> Deployment {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        match topology {
            Topology::Single => Deployment::Single(RedisServer::start()),
            Topology::Cluster => Deployment::Shared {
                cluster: shared_cluster(),
                namespace: format!("t{}-", NEXT.fetch_add(1, Ordering::Relaxed)),
            },
        }
    }

    /// Servers of the test's own, to kill, freeze or restart, or whose counters it reads.
    pub fn start_own(topology: Topology) -> Deployment {
        match topology {
            Topology::Single => Deployment::Single(RedisServer::start()),
            Topology::Cluster => Deployment::Cluster(RedisCluster::start()),
        }
    }

    /// A builder for this deployment with the test timeouts (and, on the shared cluster, a
    /// prefix in the test's namespace: give it another with [`Deployment::prefix`]).
    pub fn builder(&self) -> CacheBuilder {
        match self {
            Deployment::Single(server) => server.builder(),
            Deployment::Cluster(cluster) => cluster.builder(),
            Deployment::Shared { cluster, .. } => cluster.builder().prefix(self.prefix("rcache")),
        }
    }

    /// The prefix [`Deployment::cache`] gives a cache asked for with `prefix`: the same, in the
    /// test's namespace on the shared cluster.
    pub fn prefix(&self, prefix: &str) -> String {
        match self {
            Deployment::Shared { namespace, .. } => format!("{namespace}{prefix}"),
            _ => prefix.to_string(),
        }
    }

    /// A cache with its own prefix and the test timeouts.
    pub fn cache(&self, prefix: &str) -> Cache {
        self.builder()
            .prefix(self.prefix(prefix))
            .build()
            .expect("valid test cache")
    }

    /// The URLs a process of its own connects with: one server's, or every node of the cluster.
    pub fn urls(&self) -> Vec<String> {
        let cluster = match self {
            Deployment::Single(server) => return vec![server.url()],
            Deployment::Cluster(cluster) => cluster,
            Deployment::Shared { cluster, .. } => cluster,
        };
        cluster
            .addresses()
            .iter()
            .map(|address| format!("redis://{address}"))
            .collect()
    }

    /// The cluster (shared or not), to reach its nodes.
    pub fn cluster(&self) -> Option<&RedisCluster> {
        match self {
            Deployment::Single(_) => None,
            Deployment::Cluster(cluster) => Some(cluster),
            Deployment::Shared { cluster, .. } => Some(cluster),
        }
    }

    /// A connection routing each command by its key.
    pub async fn connection(&self) -> AnyConnection {
        match self {
            Deployment::Single(server) => AnyConnection::Single(server.connection().await),
            Deployment::Cluster(cluster) => AnyConnection::Cluster(cluster.connection().await),
            Deployment::Shared { cluster, .. } => {
                AnyConnection::Cluster(cluster.connection().await)
            }
        }
    }

    /// Every key (of the test's namespace), sorted.
    pub async fn keys(&self) -> Vec<String> {
        self.keys_matching("*").await
    }

    /// The entries: every key of the test but locks (an invalidation leaves its mark in the
    /// lock for one lease) and tags' sets and marks.
    pub async fn entries(&self) -> Vec<String> {
        let mut keys = self.keys().await;
        keys.retain(|k| !k.ends_with(":lock") && !k.contains(":#tag:"));
        keys
    }

    /// The keys matching a glob pattern (in the test's namespace), sorted.
    pub async fn keys_matching(&self, pattern: &str) -> Vec<String> {
        match self {
            Deployment::Single(server) => {
                let mut keys: Vec<String> = server.command(&["KEYS", pattern]).await.unwrap();
                keys.sort();
                keys
            }
            Deployment::Cluster(cluster) => cluster.keys_matching(pattern).await,
            Deployment::Shared { cluster, .. } => {
                cluster.keys_matching(&self.prefix(pattern)).await
            }
        }
    }

    /// Runs one command about a key and returns its reply.
    pub async fn command<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query_async(&mut self.connection().await).await
    }

    /// How many commands a cached call can send (`GET`, `SET`, `EVAL`, `EVALSHA`) every server
    /// has executed, from `INFO commandstats`: to check that a call sent none.
    pub fn cache_commands(&self) -> u64 {
        self.servers()
            .iter()
            .map(|server| {
                server
                    .cli(&["INFO", "commandstats"])
                    .lines()
                    .filter(|line| {
                        [
                            "cmdstat_get:",
                            "cmdstat_set:",
                            "cmdstat_eval:",
                            "cmdstat_evalsha:",
                        ]
                        .iter()
                        .any(|name| line.starts_with(name))
                    })
                    .filter_map(|line| {
                        let calls = line.split("calls=").nth(1)?;
                        calls.split(',').next()?.parse::<u64>().ok()
                    })
                    .sum::<u64>()
            })
            .sum()
    }

    /// Every server, the shared cluster's included: only for what stays in the test's
    /// namespace (a user of its own, its own channels).
    pub fn every_server(&self) -> Vec<&RedisServer> {
        match self {
            Deployment::Shared { cluster, .. } => cluster.nodes().iter().collect(),
            _ => self.servers(),
        }
    }

    fn servers(&self) -> Vec<&RedisServer> {
        match self {
            Deployment::Single(server) => vec![server],
            Deployment::Cluster(cluster) => cluster.nodes().iter().collect(),
            Deployment::Shared { .. } => {
                panic!("the shared cluster's servers are not this test's: use start_own()")
            }
        }
    }

    /// Freezes every server (SIGSTOP).
    pub fn pause(&self) {
        crate::signal_all(&self.servers(), "-STOP");
    }

    /// Thaws every server.
    pub fn resume(&self) {
        crate::signal_all(&self.servers(), "-CONT");
    }

    /// Kills every server.
    pub fn kill(&mut self) {
        match self {
            Deployment::Single(server) => server.kill(),
            Deployment::Cluster(cluster) => cluster.nodes_mut().iter_mut().for_each(|n| n.kill()),
            Deployment::Shared { .. } => {
                panic!("the shared cluster's servers are not this test's: use start_own()")
            }
        }
    }

    /// Starts every server again, with its configuration (a cluster's nodes find each other
    /// again through their cluster config files), and waits until they serve.
    pub fn restart(&mut self) {
        match self {
            Deployment::Single(server) => server.restart(),
            Deployment::Cluster(cluster) => {
                cluster.nodes_mut().iter_mut().for_each(|n| n.restart());
                cluster.wait_until_healthy(3);
            }
            Deployment::Shared { .. } => {
                panic!("the shared cluster's servers are not this test's: use start_own()")
            }
        }
    }
}

/// A single server's connection or a cluster's.
#[derive(Clone)]
pub enum AnyConnection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for AnyConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AnyConnection::Single(_) => "AnyConnection::Single",
            AnyConnection::Cluster(_) => "AnyConnection::Cluster",
        })
    }
}

impl ConnectionLike for AnyConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            AnyConnection::Single(conn) => conn.req_packed_command(cmd),
            AnyConnection::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            AnyConnection::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            AnyConnection::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            AnyConnection::Single(conn) => conn.get_db(),
            AnyConnection::Cluster(conn) => conn.get_db(),
        }
    }
}

/// Runs a suite of `tests/suites/` against a deployment: `suite!(behaviour, Topology::Single)`
/// declares module `behaviour` holding `tests/suites/behaviour.rs`, whose tests call `start()`
/// for a deployment of that topology (a namespace on the shared cluster), or `start_own()` for
/// servers of their own. The same suite runs against one server (`tests/behaviour.rs`) and a
/// cluster (`tests/cluster.rs`) without reaching up for a constant.
#[macro_export]
macro_rules! suite {
    ($suite:ident, $topology:expr) => {
        mod $suite {
            /// A deployment of the topology this suite runs against (on a cluster, a namespace
            /// on the one the test binary shares).
            #[allow(dead_code)]
            fn start() -> $crate::deployment::Deployment {
                $crate::deployment::Deployment::start($topology)
            }

            /// Servers of the test's own, to kill, freeze, restart or count commands on.
            #[allow(dead_code)]
            fn start_own() -> $crate::deployment::Deployment {
                $crate::deployment::Deployment::start_own($topology)
            }

            include!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/suites/",
                stringify!($suite),
                ".rs"
            ));
        }
    };
}
