//! A Redis Cluster of real `redis-server` processes on loopback: 3 primaries and 3 replicas,
//! joined with `redis-cli --cluster create`. The node timeout is long enough that a node starved
//! of CPU on a loaded machine is not failed over in the middle of a test; the failover tests
//! choose a short one, so that their failover takes seconds.

use std::process::Command;
use std::time::Duration;

use redis::cluster_async::ClusterConnection;
use redis_cached::{Cache, CacheBuilder};

use crate::{RedisServer, ScratchDir, test_builder};

/// How long a node may be unreachable before the cluster fails it over.
pub const NODE_TIMEOUT_MS: u64 = 5000;
/// The node timeout of the tests and examples that kill a primary on purpose.
pub const FAILOVER_NODE_TIMEOUT_MS: u64 = 1000;

/// Six cluster nodes (three primaries with a replica each); all are killed when dropped.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    /// The nodes' cluster config files; removed after the nodes are killed.
    _dir: ScratchDir,
}

impl RedisCluster {
    /// Starts six nodes, creates the cluster and waits until every node sees all slots served
    /// and every replica is in sync.
    pub fn start() -> RedisCluster {
        Self::start_with_node_timeout(NODE_TIMEOUT_MS)
    }

    /// [`RedisCluster::start`] with another `cluster-node-timeout`.
    pub fn start_with_node_timeout(node_timeout_ms: u64) -> RedisCluster {
        Self::start_with(node_timeout_ms, &[])
    }

    /// [`RedisCluster::start_with_node_timeout`] with more `redis-server` arguments for every
    /// node.
    pub fn start_with(node_timeout_ms: u64, extra: &[&str]) -> RedisCluster {
        let dir = ScratchDir::new("cluster");
        let timeout = node_timeout_ms.to_string();
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| {
                let mut args = vec![
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    &timeout,
                    // A replica that lost its primary a while ago may still be promoted.
                    "--cluster-replica-validity-factor",
                    "0",
                    "--dir",
                    dir.as_str(),
                ];
                args.extend_from_slice(extra);
                RedisServer::start_cluster_node(&args)
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = RedisCluster { nodes, _dir: dir };
        cluster.wait_until_healthy(3);
        cluster
    }

    /// `host:port` of every node, as `REDIS_CLUSTER_URLS` lists them.
    pub fn addresses(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect()
    }

    /// A builder for this cluster with the test timeouts.
    pub fn builder(&self) -> CacheBuilder {
        test_builder().cluster(self.addresses())
    }

    /// A cache on this cluster with its own prefix and the test settings ([`test_builder`]).
    pub fn cache(&self, prefix: &str) -> Cache {
        self.builder()
            .prefix(prefix)
            .build()
            .expect("valid test cache")
    }

    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// A cluster connection for inspecting and tampering with the contents.
    pub async fn connection(&self) -> ClusterConnection {
        let urls: Vec<String> = self
            .addresses()
            .iter()
            .map(|a| format!("redis://{a}"))
            .collect();
        redis::cluster::ClusterClientBuilder::new(urls)
            .response_timeout(crate::INSPECTION_TIMEOUT)
            .connection_timeout(crate::INSPECTION_TIMEOUT)
            .build()
            .expect("cluster client")
            .get_async_connection()
            .await
            .expect("connect to the test cluster")
    }

    /// The running nodes that are primaries now.
    pub fn primaries(&self) -> Vec<&RedisServer> {
        self.nodes
            .iter()
            .filter(|n| n.is_running() && role(n) == "master")
            .collect()
    }

    /// Every key on the primaries, sorted.
    pub async fn keys(&self) -> Vec<String> {
        self.keys_matching("*").await
    }

    /// Keys matching a glob pattern on the primaries, sorted.
    pub async fn keys_matching(&self, pattern: &str) -> Vec<String> {
        let mut keys = Vec::new();
        for node in self.primaries() {
            keys.extend(
                node.command::<Vec<String>>(&["KEYS", pattern])
                    .await
                    .unwrap(),
            );
        }
        keys.sort();
        keys
    }

    /// Removes every key.
    pub async fn flush(&self) {
        for node in self.primaries() {
            node.command::<()>(&["FLUSHALL"]).await.expect("FLUSHALL");
        }
    }

    /// The primary that serves `key` now.
    pub fn primary_of(&self, key: &str) -> usize {
        let output = Command::new("redis-cli")
            .args([
                "-p",
                &self.nodes[0].port().to_string(),
                "CLUSTER",
                "KEYSLOT",
                key,
            ])
            .output()
            .expect("redis-cli CLUSTER KEYSLOT");
        let slot: u16 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap();
        self.nodes
            .iter()
            .position(|n| n.is_running() && role(n) == "master" && serves(n, slot))
            .expect("a primary serves the slot")
    }

    /// The cluster node id of node `index`.
    pub fn node_id(&self, index: usize) -> String {
        self.nodes[index]
            .cli(&["CLUSTER", "MYID"])
            .trim()
            .to_string()
    }

    /// Moves `slots` slots from the primary `from` to the primary `to` (indices into
    /// [`RedisCluster::nodes`]) with `redis-cli --cluster reshard`, keys and all (`MIGRATE`):
    /// blocks until done.
    pub fn reshard(&self, from: usize, to: usize, slots: u16) {
        let output = Command::new("redis-cli")
            .args(["--cluster", "reshard"])
            .arg(format!("127.0.0.1:{}", self.nodes[from].port()))
            .args(["--cluster-from", &self.node_id(from)])
            .args(["--cluster-to", &self.node_id(to)])
            .args(["--cluster-slots", &slots.to_string()])
            .arg("--cluster-yes")
            .output()
            .expect("run redis-cli --cluster reshard");
        assert!(
            output.status.success(),
            "redis-cli --cluster reshard failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Prints every node's view of the cluster (`CLUSTER INFO` state and `CLUSTER NODES`) after
    /// `delay`, unless the returned guard is dropped first: for a test that is slow to see the
    /// cluster recover, so that its captured output shows what the cluster thought.
    pub fn report_after(&self, delay: Duration) -> ReportGuard {
        let ports: Vec<u16> = self.nodes.iter().map(|n| n.port()).collect();
        let (cancel, cancelled) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            // The guard dropped (disconnected) before the delay: nothing to report.
            let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = cancelled.recv_timeout(delay)
            else {
                return;
            };
            for port in ports {
                let cli = |args: &[&str]| {
                    Command::new("redis-cli")
                        .args(["-p", &port.to_string()])
                        .args(args)
                        .output()
                        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                        .unwrap_or_default()
                };
                let state = cli(&["CLUSTER", "INFO"]);
                let state = state.lines().next().unwrap_or("no answer");
                println!("node {port}: {state}\n{}", cli(&["CLUSTER", "NODES"]));
            }
        });
        ReportGuard { _cancel: cancel }
    }

    /// Waits until `primaries` running primaries serve all slots, as every running node sees it,
    /// and every running replica is in sync with its primary. Polls: the cluster has no event
    /// to wait for.
    pub fn wait_until_healthy(&self, primaries: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let running: Vec<&RedisServer> = self.nodes.iter().filter(|n| n.is_running()).collect();
            let ok = running.iter().all(|n| {
                let info = n.cli(&["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
            });
            let masters = running.iter().filter(|n| role(n) == "master").count();
            let synced = running.iter().filter(|n| role(n) == "slave").all(|n| {
                let info = n.cli(&["INFO", "replication"]);
                info.contains("master_link_status:up")
            });
            if ok && masters == primaries && synced {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the cluster did not become healthy within 120 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl RedisCluster {
    /// Makes sure this cluster's servers stop and its directories go when this process ends,
    /// however it ends (even killed, when no `Drop` runs): a watcher process reads a pipe only
    /// this process holds, and cleans up at its end of file. For a cluster that lives in a
    /// `static`, which is never dropped: keep the returned child for as long as the cluster.
    pub fn reap_at_exit(&self) -> std::process::Child {
        let mut script = String::from("read _; kill -9");
        for pid in self.nodes.iter().filter_map(RedisServer::pid) {
            script.push_str(&format!(" {pid}"));
        }
        script.push_str(" 2>/dev/null; rm -rf");
        let dirs = std::iter::once(self._dir.path().to_path_buf())
            .chain(self.nodes.iter().map(|n| crate::scratch_dir(n.port())));
        for dir in dirs {
            script.push_str(&format!(" '{}'", dir.display()));
        }
        Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the cluster's reaper")
    }
}

/// Cancels a [`RedisCluster::report_after`] when dropped.
#[derive(Debug)]
pub struct ReportGuard {
    _cancel: std::sync::mpsc::Sender<()>,
}

/// `master` or `slave`, from `ROLE`.
fn role(node: &RedisServer) -> String {
    node.cli(&["ROLE"]).lines().next().unwrap_or("").to_string()
}

/// Whether `node` serves `slot`, from its own `CLUSTER NODES` line.
fn serves(node: &RedisServer, slot: u16) -> bool {
    let nodes = node.cli(&["CLUSTER", "NODES"]);
    let Some(line) = nodes.lines().find(|l| l.contains("myself")) else {
        return false;
    };
    line.split_whitespace().skip(8).any(|range| {
        let (start, end) = range.split_once('-').unwrap_or((range, range));
        match (start.parse::<u16>(), end.parse::<u16>()) {
            (Ok(start), Ok(end)) => (start..=end).contains(&slot),
            _ => false,
        }
    })
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}
