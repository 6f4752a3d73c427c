//! One test suite, several deployments: the behaviour and stampede suites (in
//! `tests/tests/suites/`) run against a single server and against a cluster, through this one
//! handle.

use cache_runtime::{Cache, CacheBuilder};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::RedisServer;
use crate::cluster::RedisCluster;

/// Which deployment a suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Single,
    Cluster,
}

/// A server or a cluster the test owns.
#[derive(Debug)]
pub enum Deployment {
    Single(RedisServer),
    Cluster(RedisCluster),
}

impl Deployment {
    pub fn start(topology: Topology) -> Deployment {
        match topology {
            Topology::Single => Deployment::Single(RedisServer::start()),
            Topology::Cluster => Deployment::Cluster(RedisCluster::start()),
        }
    }

    /// A builder for this deployment with the test timeouts.
    pub fn builder(&self) -> CacheBuilder {
        match self {
            Deployment::Single(server) => server.builder(),
            Deployment::Cluster(cluster) => cluster.builder(),
        }
    }

    /// A cache with its own prefix and the test timeouts.
    pub fn cache(&self, prefix: &str) -> Cache {
        self.builder()
            .prefix(prefix)
            .build()
            .expect("valid test cache")
    }

    /// A connection routing each command by its key.
    pub async fn connection(&self) -> AnyConnection {
        match self {
            Deployment::Single(server) => AnyConnection::Single(server.connection().await),
            Deployment::Cluster(cluster) => AnyConnection::Cluster(cluster.connection().await),
        }
    }

    /// Every key, sorted.
    pub async fn keys(&self) -> Vec<String> {
        self.keys_matching("*").await
    }

    /// The keys matching a glob pattern, sorted.
    pub async fn keys_matching(&self, pattern: &str) -> Vec<String> {
        match self {
            Deployment::Single(server) => {
                let mut keys: Vec<String> = server.command(&["KEYS", pattern]).await.unwrap();
                keys.sort();
                keys
            }
            Deployment::Cluster(cluster) => cluster.keys_matching(pattern).await,
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

    fn servers(&self) -> Vec<&RedisServer> {
        match self {
            Deployment::Single(server) => vec![server],
            Deployment::Cluster(cluster) => cluster.nodes().iter().collect(),
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
/// for a fresh deployment of that topology. The same suite runs against one server
/// (`tests/behaviour.rs`) and a cluster (`tests/cluster.rs`) without reaching up for a constant.
#[macro_export]
macro_rules! suite {
    ($suite:ident, $topology:expr) => {
        mod $suite {
            /// A fresh deployment of the topology this suite runs against.
            #[allow(dead_code)]
            fn start() -> $crate::deployment::Deployment {
                $crate::deployment::Deployment::start($topology)
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
