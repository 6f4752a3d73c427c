//! Why a live Redis refuses the cache's commands (out of memory, read-only, authentication, TLS),
//! and what to do about it: logged once per cause until a write succeeds again.

use redis::RedisError;

/// Every command the cache sends, as ACL rules: grant these (after `-@all`) with the cache's
/// keys and channels, `~<prefix>:*` and `&<prefix>:*`, and nothing is refused:
///
/// ```text
/// ACL SETUSER catalog on >password resetkeys ~catalog:* resetchannels &catalog:* -@all <ACL_COMMANDS>
/// ```
///
/// - `GET`, `MGET`, `SET`: reads, and stores without a lock;
/// - `EVALSHA`, `EVAL` (the first time a server does not know a script), and what the scripts
///   call: `GET`, `SET`, `DEL`, `TYPE`, `PEXPIRE`, `TIME`, `PUBLISH` (locks, stores,
///   invalidations) and `ZADD`, `ZRANGE`, `ZRANGEBYSCORE`, `ZREMRANGEBYSCORE`, `ZREM`, `ZSCORE`
///   (tags);
/// - `SUBSCRIBE`, `UNSUBSCRIBE`: waiting for another process's value;
/// - `SCAN`, `UNLINK`: clears and invalidations;
/// - `PING`, `INFO`: connection checks and health;
/// - `HELLO`, `CLIENT|TRACKING`: the local tier (RESP3, client-side caching; Redis lets every
///   user run `HELLO`, it is listed for proxies that check it too);
/// - `CLUSTER|SLOTS`, `ASKING`: Redis Cluster.
///
/// A URL naming a database other than 0 also needs `+select`. On Redis 7.2 and later, redis-rs
/// also names itself on connect with `CLIENT SETINFO`: add `+client|setinfo` to keep that out of
/// `ACL LOG` (a refusal is ignored; Redis 7.0 does not know the command). Sentinel servers are
/// asked `SENTINEL` commands under their own ACL.
pub const ACL_COMMANDS: &str = "+get +mget +set +del +type +pexpire +time +publish +zadd +zrange \
     +zrangebyscore +zremrangebyscore +zrem +zscore +evalsha +eval +subscribe +unsubscribe +scan \
     +unlink +ping +info +hello +client|tracking +cluster|slots +asking";

/// Why a live Redis refuses the cache's commands; each is logged once, with what to do.
#[derive(Debug, Clone, Copy)]
pub(super) enum Refusal {
    OutOfMemory,
    ReadOnly,
    Auth,
    Tls,
}

impl Refusal {
    pub(super) fn of(err: &RedisError) -> Option<Refusal> {
        match err.code() {
            Some("OOM") => return Some(Refusal::OutOfMemory),
            Some("READONLY") => return Some(Refusal::ReadOnly),
            Some("NOAUTH" | "WRONGPASS" | "NOPERM") => return Some(Refusal::Auth),
            _ => {}
        }
        if err.kind() == redis::ErrorKind::AuthenticationFailed {
            return Some(Refusal::Auth);
        }
        // rustls's verdicts reach us as I/O errors; their text is all there is to go by.
        let text = err.to_string();
        (text.contains("certificate") || text.contains("TLS") || text.contains("tls"))
            .then_some(Refusal::Tls)
    }

    /// Logs why `err` refuses the cache's commands, once until `logged` (bits of `Refusal`)
    /// is cleared by a successful write.
    pub(super) fn log_once(logged: &std::sync::atomic::AtomicU8, err: &RedisError) {
        let Some(refusal) = Refusal::of(err) else {
            return;
        };
        let bit = 1 << refusal as u8;
        if logged.fetch_or(bit, std::sync::atomic::Ordering::Relaxed) & bit == 0 {
            tracing::warn!(code = err.code(), error = %err, "redis_cache: {}", refusal.explain());
        }
    }

    fn explain(self) -> &'static str {
        match self {
            Refusal::OutOfMemory => {
                "Redis refuses writes: maxmemory is reached and the eviction policy does not evict \
                 (noeviction); values are not cached until memory frees up. For a cache, set \
                 maxmemory-policy to allkeys-lru or allkeys-lfu"
            }
            Refusal::ReadOnly => {
                "Redis refuses writes: this is a read-only replica; values are not cached. Point \
                 the cache at the primary"
            }
            Refusal::Auth => {
                "Redis refuses the cache's commands (authentication or ACL permissions); calls \
                 run uncached. Check the user and password (URL, REDIS_USERNAME/REDIS_PASSWORD \
                 or `credentials`) and that the user's ACL allows the cache's keys (~prefix:*), \
                 its channels (&prefix:*) and the commands of redis_cached::ACL_COMMANDS: \
                 +get +mget +set +del +type +pexpire +time +publish +zadd +zrange \
                 +zrangebyscore +zremrangebyscore +zrem +zscore +evalsha +eval +subscribe \
                 +unsubscribe +scan +unlink +ping +info +hello +client|tracking \
                 +cluster|slots +asking"
            }
            Refusal::Tls => {
                "The TLS handshake with Redis failed; calls run uncached. Check that the CA \
                 (REDIS_TLS_CA_FILE or `tls_ca_pem`) signed the server's certificate, that the \
                 certificate names the host in the URL, and the client certificate if the \
                 server asks for one"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_every_command_of_the_acl_list() {
        let said: String = Refusal::Auth
            .explain()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(said.contains(ACL_COMMANDS), "{said}");
    }
}
