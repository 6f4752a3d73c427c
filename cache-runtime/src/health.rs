//! What the server says about memory and evictions, for operators: logged once when a cache
//! first connects, and available on demand from [`Cache::health`](crate::Cache::health).
//!
//! The check that matters most: `maxmemory-policy noeviction` with a memory limit makes a full
//! cache refuse every write (a common production mistake, and the default of a bare
//! `redis-server`).

use std::fmt;

/// Memory and eviction facts of the Redis behind a cache, from `INFO memory` and `INFO stats`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RedisHealth {
    pub redis_version: String,
    /// Bytes in use.
    pub used_memory: u64,
    /// The memory limit in bytes; 0 means none.
    pub maxmemory: u64,
    /// `noeviction`, `allkeys-lru`, `volatile-ttl`...
    pub maxmemory_policy: String,
    /// Keys evicted for memory since the server started.
    pub evicted_keys: u64,
    /// Keys expired by TTL since the server started.
    pub expired_keys: u64,
}

/// Why [`Cache::health`](crate::Cache::health) could not read the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthError(pub(crate) String);

impl fmt::Display for HealthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot read Redis health: {}", self.0)
    }
}

impl std::error::Error for HealthError {}

impl RedisHealth {
    /// Reads the fields out of `INFO` text (`name:value` lines).
    pub(crate) fn parse(info: &str) -> RedisHealth {
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.trim_end().strip_prefix(name)?.strip_prefix(':'))
                .unwrap_or("")
                .to_string()
        };
        let number = |name: &str| field(name).parse().unwrap_or(0);
        RedisHealth {
            redis_version: field("redis_version"),
            used_memory: number("used_memory"),
            maxmemory: number("maxmemory"),
            maxmemory_policy: field("maxmemory_policy"),
            evicted_keys: number("evicted_keys"),
            expired_keys: number("expired_keys"),
        }
    }

    /// What an operator should change, if anything.
    pub fn warnings(&self) -> Vec<&'static str> {
        let mut warnings = Vec::new();
        if self.maxmemory_policy == "noeviction" && self.maxmemory > 0 {
            warnings.push(
                "maxmemory-policy is noeviction: once maxmemory is reached Redis refuses every \
                 write and nothing new is cached; use allkeys-lru or allkeys-lfu for a cache",
            );
        }
        if self.maxmemory == 0 {
            warnings.push(
                "no maxmemory is set: the cache grows until the machine runs out of memory; set \
                 maxmemory with an allkeys-lru or allkeys-lfu policy",
            );
        }
        warnings
    }
}

impl fmt::Display for RedisHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Redis {}: {} used",
            self.redis_version,
            mib(self.used_memory)
        )?;
        if self.maxmemory > 0 {
            write!(
                f,
                " of {} ({:.0}%)",
                mib(self.maxmemory),
                100.0 * self.used_memory as f64 / self.maxmemory as f64
            )?;
        } else {
            f.write_str(", no maxmemory")?;
        }
        write!(
            f,
            ", maxmemory-policy {}, {} keys evicted, {} expired",
            self.maxmemory_policy, self.evicted_keys, self.expired_keys
        )
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Server\r\nredis_version:7.0.15\r\n# Memory\r\nused_memory:1048576\r\n\
        used_memory_human:1.00M\r\nmaxmemory:4194304\r\nmaxmemory_human:4.00M\r\n\
        maxmemory_policy:noeviction\r\n# Stats\r\nexpired_keys:12\r\nevicted_keys:3\r\n";

    #[test]
    fn reads_info_and_warns_about_noeviction() {
        let health = RedisHealth::parse(INFO);
        assert_eq!(health.used_memory, 1 << 20);
        assert_eq!(health.maxmemory, 4 << 20);
        assert_eq!(health.maxmemory_policy, "noeviction");
        assert_eq!((health.evicted_keys, health.expired_keys), (3, 12));
        assert_eq!(
            health.to_string(),
            "Redis 7.0.15: 1.0 MiB used of 4.0 MiB (25%), maxmemory-policy noeviction, 3 keys \
             evicted, 12 expired"
        );
        assert_eq!(health.warnings().len(), 1);
        assert!(health.warnings()[0].contains("noeviction"));
        let lru = RedisHealth::parse(&INFO.replace("noeviction", "allkeys-lru"));
        assert!(lru.warnings().is_empty());
    }
}
