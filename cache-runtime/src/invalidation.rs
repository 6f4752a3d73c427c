//! Removing entries on purpose: one call's entry (the `_invalidate` companion), and clearing a
//! whole function or key prefix. (The `_refresh` companion, a write-through refresh, is a call
//! through the flow: `crate::flow::write_through`.)
//!
//! None of them may be undone by a computation that was already running when they happened (it
//! may have read the data from before the write): they delete or take over the key's lock, and
//! a value is stored only while its lock is held (see [`crate::stampede::lock`]). Calls in flight
//! in this process are detached as well, so a call made after an invalidation never receives a
//! value computed before it.
//!
//! Clearing scans with `SCAN ... MATCH` and deletes with `UNLINK` in batches (never `KEYS` or
//! `FLUSHDB`), so a large keyspace is not blocked, and it scans twice: an entry stored during the
//! first pass by a computation that started before the clear is removed by the second. On a
//! cluster, each pass scans every primary (the slot map is read again for each pass, so a
//! failover in between is followed).

use crate::cache::Cache;
use crate::connection::{Connection, Lua};
use crate::error::CacheError;
use crate::key::CallKey;
use crate::spec::SiteSpec;
use crate::stampede::{lock, single_flight};
use crate::stats;

/// Keys asked for per `SCAN` step: large enough that a million keys take a thousand round trips,
/// small enough that each step blocks Redis for well under a millisecond.
pub(crate) const SCAN_COUNT: usize = 1000;

/// `KEYS`: entry, lock. `ARGV`: lease ms. Deletes the entry, leaves the invalidation's mark in
/// the lock for one lease (a computation holding the lock is fenced off; one that began before
/// and asks for the lock after finds it taken: see `stampede::lock`), and wakes the
/// lock's waiters, who take the mark over and compute afresh. Returns 1 if there was an entry.
static INVALIDATE: Lua = Lua::new(
    r"local removed = redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], 'invalidated', 'PX', ARGV[1])
redis.call('PUBLISH', KEYS[2], '1')
return removed",
);

/// The lease of `cache`'s locks, as `PX` milliseconds: how long an invalidation's mark lives.
fn mark_lease(cache: &Cache) -> String {
    let lease = cache.locks().map(|locks| locks.settings().lease);
    crate::connection::millis(lease.unwrap_or(crate::config::DEFAULT_LOCK_LEASE)).to_string()
}

/// Removes one call's entry (what the `_invalidate` companion does). `Ok(true)`: an entry was
/// there.
#[doc(hidden)]
pub async fn invalidate(
    spec: &'static SiteSpec,
    cache: &Cache,
    call: CallKey,
) -> Result<bool, CacheError> {
    let conn = usable(cache)?;
    let key = call
        .render(
            cache.prefix(),
            spec,
            spec.fingerprint(cache.codec_for(spec)),
        )
        .ok_or(CacheError::Unkeyable)?;
    if let Some(id) = single_flight::flight_id(spec.namespace(), &call) {
        cache.flights().detach(id);
    }
    let lock_key = lock::lock_key(&key);
    let lease = mark_lease(cache);
    conn.changed([key.as_str()]);
    let removed: i64 = conn
        .eval(&INVALIDATE, &[&key, &lock_key], &[lease.as_bytes()])
        .await?;
    // This process drops its copy as soon as the key is gone (a read that started before and
    // would copy the old value undoes itself); the others when Redis announces the change.
    if let (Some(local), Some(args)) = (cache.local(), call.args()) {
        local.invalidate(spec, args);
    }
    Ok(removed == 1)
}

/// Removes the entries of a batch call's keys (what a batch function's `_invalidate` companion
/// does), in one round trip per server; how many were there.
#[doc(hidden)]
pub async fn invalidate_batch<K>(
    spec: &'static SiteSpec,
    cache: &Cache,
    keys: Vec<(K, CallKey)>,
) -> Result<u64, CacheError> {
    let conn = usable(cache)?;
    let fingerprint = spec.fingerprint(cache.codec_for(spec));
    let rendered = keys
        .iter()
        .map(|(_, call)| call.render(cache.prefix(), spec, fingerprint))
        .collect::<Option<Vec<String>>>()
        .ok_or(CacheError::Unkeyable)?;
    for (_, call) in &keys {
        if let Some(id) = single_flight::flight_id(spec.namespace(), call) {
            cache.flights().detach(id);
        }
    }
    let locks: Vec<String> = rendered.iter().map(|key| lock::lock_key(key)).collect();
    let lease = mark_lease(cache);
    conn.changed(rendered.iter().map(String::as_str));
    let calls: Vec<(Vec<&str>, Vec<&[u8]>)> = rendered
        .iter()
        .zip(&locks)
        .map(|(key, lock)| (vec![key.as_str(), lock.as_str()], vec![lease.as_bytes()]))
        .collect();
    let removed = conn
        .eval_many::<i64>(&INVALIDATE, &calls, cache.limits().batch_chunk)
        .await;
    if let Some(local) = cache.local() {
        for (_, call) in &keys {
            if let Some(args) = call.args() {
                local.invalidate(spec, args);
            }
        }
    }
    if let Some(err) = removed.failures.into_iter().next() {
        return Err(err.into());
    }
    Ok(removed.each.iter().filter(|r| **r == Some(1)).count() as u64)
}

impl Cache {
    /// Removes every entry of one function (all argument values, all versions), named as
    /// [`FunctionStats::function`](crate::FunctionStats::function) shows it: `module::fn`,
    /// `module::Type::method`, or its `name = "..."`. Returns how many keys were removed
    /// (entries, and locks of computations in flight, which then store nothing).
    ///
    /// Runs `SCAN` + `UNLINK` in batches of about a thousand keys, twice over the keyspace (the
    /// second pass removes what computations already running stored during the first), so it
    /// takes time in proportion to the size of the whole database, not of the function; it never
    /// blocks Redis for long.
    pub async fn clear_function(&self, function: &str) -> Result<u64, CacheError> {
        check_segment(function, "function name")?;
        // `{prefix}:{function}:{8 hex digits}:{...` (an entry) or `...:#{...` (its lock, which
        // must go too: deleting it is what keeps a computation in flight from storing after the
        // clear). The fingerprint's shape keeps `app::get` from matching the keys of
        // `app::get::Type::method`.
        let pattern = format!(
            "{}:{function}:[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]:[{{#]*",
            self.prefix()
        );
        self.clear_matching(&pattern, |name| name == function).await
    }

    /// Removes every key of this cache that starts with `{prefix}:{key_prefix}`, for example
    /// `"app::catalog::"` for all functions of one module. Same cost and guarantees as
    /// [`Cache::clear_function`].
    pub async fn clear_prefix(&self, key_prefix: &str) -> Result<u64, CacheError> {
        check_segment(key_prefix, "key prefix")?;
        let pattern = format!("{}:{key_prefix}*", self.prefix());
        self.clear_matching(&pattern, |name| name.starts_with(key_prefix))
            .await
    }

    /// Removes every key of this cache (everything under its prefix). Other data in the same
    /// Redis is not touched.
    pub async fn clear(&self) -> Result<u64, CacheError> {
        let pattern = format!("{}:*", self.prefix());
        self.clear_matching(&pattern, |_| true).await
    }

    /// Clears the keys matching `pattern`, of the functions `affected` selects by name.
    async fn clear_matching(
        &self,
        pattern: &str,
        affected: impl Fn(&str) -> bool,
    ) -> Result<u64, CacheError> {
        let conn = usable(self)?;
        // Calls in flight here started before the clear: later calls must not join them.
        let namespaces = stats::namespaces(affected);
        for namespace in &namespaces {
            self.flights().detach_all(Some(*namespace));
        }
        conn.changed_all();
        let mut removed = sweep(conn, pattern).await?;
        removed += sweep(conn, pattern).await?;
        if let Some(local) = self.local() {
            local.clear_namespaces(&namespaces);
        }
        Ok(removed)
    }
}

/// One pass of `SCAN` + `UNLINK` over the whole keyspace (every primary of a cluster).
async fn sweep(conn: &Connection, pattern: &str) -> Result<u64, CacheError> {
    let mut removed = 0;
    for node in conn.primaries().await? {
        let mut cursor = 0;
        loop {
            let (next, keys) = conn.scan(&node, cursor, pattern, SCAN_COUNT).await?;
            if !keys.is_empty() {
                removed += conn.unlink(&keys).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(removed)
}

pub(crate) fn usable(cache: &Cache) -> Result<&Connection, CacheError> {
    let conn = cache.connection().ok_or(CacheError::Disabled)?;
    tokio::runtime::Handle::try_current().map_err(|_| CacheError::NoRuntime)?;
    Ok(conn)
}

/// A function name or key prefix: the characters keys are made of, so it cannot carry a glob
/// character out of the cache's prefix.
fn check_segment(segment: &str, what: &str) -> Result<(), CacheError> {
    let allowed = crate::key::is_segment_char;
    if segment.is_empty() || segment.len() > 256 || !segment.chars().all(allowed) {
        return Err(CacheError::InvalidName(format!(
            "invalid {what} {segment:?}: use 1 to 256 ASCII letters, digits or `_ - . : /`"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cannot_carry_glob_characters() {
        for bad in ["", "a*", "a?", "[ab]", "a\\", "a b", "é"] {
            assert!(check_segment(bad, "x").is_err(), "{bad:?}");
        }
        assert!(check_segment("app::catalog::product", "x").is_ok());
    }
}
