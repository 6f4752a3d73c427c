//! [`CacheError`]: why an invalidation or a clear did not happen.
//!
//! Cached calls never return it (they fall back to running the function); only the operations
//! whose whole point is to change Redis do, so the caller can retry or alert.

use std::fmt;

use crate::connection::CommandError;

/// Why an invalidation or a clear failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheError {
    /// The cache is disabled ([`Cache::disabled`](crate::Cache::disabled), or an invalid
    /// configuration): there is nothing to change.
    Disabled,
    /// Redis did not answer in time, the connection failed, or the circuit breaker is open.
    Unavailable(String),
    /// Redis answered with an error (for example a missing ACL permission).
    Redis(String),
    /// An argument could not be serialized, so the call has no key.
    Unkeyable,
    /// A function name or key prefix with characters no key of this cache can have.
    InvalidName(String),
    /// Called outside a Tokio runtime, which the Redis client needs.
    NoRuntime,
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::Disabled => f.write_str("caching is disabled"),
            // `why` already says it: "redis command timed out", "redis unavailable (...)".
            CacheError::Unavailable(why) => f.write_str(why),
            CacheError::Redis(why) => write!(f, "redis refused the command: {why}"),
            CacheError::Unkeyable => f.write_str("an argument could not be serialized into a key"),
            CacheError::InvalidName(why) => f.write_str(why),
            CacheError::NoRuntime => {
                f.write_str("no Tokio runtime: call this from async code running on Tokio")
            }
        }
    }
}

impl std::error::Error for CacheError {}

impl From<CommandError> for CacheError {
    fn from(err: CommandError) -> Self {
        match err {
            CommandError::Redis(err) if !err.is_io_error() && !err.is_connection_dropped() => {
                CacheError::Redis(err.to_string())
            }
            CommandError::WrongType | CommandError::Malformed => CacheError::Redis(err.to_string()),
            other => CacheError::Unavailable(other.to_string()),
        }
    }
}
