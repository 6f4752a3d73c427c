//! Why a live Redis refuses the cache's commands (out of memory, read-only, authentication, TLS),
//! and what to do about it: logged once per cause until a write succeeds again.

use redis::RedisError;

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
                 or `credentials`) and that the user's ACL allows the cache's prefix (~prefix:*), \
                 its lock channels (&prefix:*) and EVALSHA, EVAL, GET, SET, SCAN, UNLINK, \
                 SUBSCRIBE, INFO"
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
