//! Redis Sentinel on loopback: a primary, a replica, and three sentinels (quorum 2) that fail
//! the primary over a second after it stops answering.

use std::time::Duration;

use redis_cached::{Cache, CacheBuilder};

use crate::{RedisServer, ScratchDir, free_port, spawn_until, test_builder};

/// The name the sentinels monitor the primary under.
pub const MASTER_NAME: &str = "cache-primary";

/// A primary, its replica and three sentinels; all killed when dropped.
#[derive(Debug)]
pub struct SentinelGroup {
    pub primary: RedisServer,
    pub replica: RedisServer,
    sentinels: Vec<RedisServer>,
    /// The sentinels' config files; removed after the sentinels are killed.
    _dir: ScratchDir,
}

impl SentinelGroup {
    /// Starts the servers and sentinels and waits until every sentinel knows the replica and
    /// the other two sentinels (so a failover can be agreed on).
    pub fn start() -> SentinelGroup {
        let dir = ScratchDir::new("sentinel");
        let primary = RedisServer::start();
        let replica_of = primary.port().to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &replica_of]);
        let sentinels = (0..3)
            .map(|_| {
                let port = free_port();
                let conf = dir.path().join(format!("sentinel-{port}.conf"));
                let text = format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {primary} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 3000\n",
                    dir = dir.as_str(),
                    primary = primary.port(),
                );
                std::fs::write(&conf, text).expect("write sentinel config");
                let args = [conf.display().to_string(), "--sentinel".into()];
                let child = spawn_until(&args, "+monitor master")
                    .unwrap_or_else(|err| panic!("start sentinel: {err}"));
                RedisServer::adopt(port, child)
            })
            .collect();
        let group = SentinelGroup {
            primary,
            replica,
            sentinels,
            _dir: dir,
        };
        group.wait_until(|sentinel| {
            let others = sentinel.cli(&["SENTINEL", "SENTINELS", MASTER_NAME]);
            let replicas = sentinel.cli(&["SENTINEL", "REPLICAS", MASTER_NAME]);
            others.matches("runid").count() == 2
                && replicas.contains("slave")
                && !replicas.contains("s_down")
        });
        group
    }

    pub fn sentinels(&self) -> &[RedisServer] {
        &self.sentinels
    }

    /// `host:port` of each sentinel, as `REDIS_SENTINEL_URLS` lists them.
    pub fn addresses(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect()
    }

    pub fn builder(&self) -> CacheBuilder {
        test_builder().sentinel(self.addresses(), MASTER_NAME)
    }

    pub fn cache(&self, prefix: &str) -> Cache {
        self.builder()
            .prefix(prefix)
            .build()
            .expect("valid test cache")
    }

    /// The port of the primary the sentinels name now.
    pub fn primary_port(&self) -> u16 {
        let reply = self.sentinels[0].cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME]);
        reply
            .lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits (polling: sentinels have no event to await from outside) until every sentinel
    /// names the replica as the primary.
    pub fn wait_for_failover(&self) {
        let port = self.replica.port().to_string();
        self.wait_until(|sentinel| {
            sentinel
                .cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME])
                .lines()
                .nth(1)
                .is_some_and(|p| p.trim() == port)
        });
    }

    fn wait_until(&self, ready: impl Fn(&RedisServer) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while !self.sentinels.iter().all(&ready) {
            assert!(
                std::time::Instant::now() < deadline,
                "the sentinels did not get there within 120 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SentinelGroup {
    fn drop(&mut self) {
        for sentinel in &mut self.sentinels {
            sentinel.kill();
        }
    }
}
