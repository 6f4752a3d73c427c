//! The per-key lock that lets one process compute a missing entry while the others wait.
//!
//! - Taken with `SET <lock> <token> NX PX <lease>` (the lock is `…:#{args}:lock`, see
//!   [`lock_key`]), in the same script that reads the entry, so a value stored just before is
//!   seen instead of recomputed.
//! - Bounded: the lease is short and the holder renews it while its function runs, so a slow
//!   function keeps its lock but a crashed holder blocks the key for one lease at most.
//! - Released by compare-and-delete (only the holder's token deletes it), in the same script that
//!   stores the value (`crate::flow::store`, where the store protocol lives), which then
//!   publishes on the lock's channel to wake the waiters at once.
//! - The fence against stale writes: a value is stored only while its computation's lock is still
//!   held. Invalidating or clearing a key deletes its lock, and a write-through refresh takes it
//!   over, so a computation that started before them (and may have read the old data) finds its
//!   token gone and stores nothing. Every store goes through a lock for this reason; a call that
//!   computes without one (the lock was busy or unreachable) leaves storing to the holder.
//! - A holder that is cancelled or panics releases in a spawned task ([`crate::Cache::flush`]
//!   waits for it); if even that fails the lease runs out.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::connection::{CommandError, Connection, KeyedCmd, Lua, millis};
use crate::tasks::Tasks;

/// `KEYS`: entry, lock. `ARGV`: token, lease ms, `1` to take over an invalidation's mark.
///
/// An invalidation leaves `invalidated` in the key's lock for one lease: a computation that began
/// before the invalidation but asks for the lock after it (`lock = false` asks alongside the
/// function) finds it taken, and stores nothing; any other attempt takes the mark over. Returns `{taken, entry or false}`; the entry only if it is a string
/// (another type is an unreadable entry, overwritten later).
static ACQUIRE: Lua = Lua::new(
    r"local taken = redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2])
if not taken and ARGV[3] == '1' and redis.call('GET', KEYS[2]) == 'invalidated' then
  taken = redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
end
local entry = false
if redis.call('TYPE', KEYS[1]).ok == 'string' then entry = redis.call('GET', KEYS[1]) end
if taken then return {1, entry} end
return {0, entry}",
);

/// `KEYS`: lock. `ARGV`: token, ms. Extends the lock if it is still ours.
static EXTEND: Lua = Lua::new(
    r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0",
);

/// `KEYS`: lock. `ARGV`: token. Releases if ours and wakes waiters.
static RELEASE: Lua = Lua::new(
    r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', KEYS[1], '1')
  return 1
end
return 0",
);

/// The lock settings of a cache (see [`CacheBuilder::lock_lease`](crate::CacheBuilder::lock_lease)
/// and [`CacheBuilder::lock_wait`](crate::CacheBuilder::lock_wait)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LockSettings {
    /// How long a lock lives without renewal: the longest a crashed holder blocks a key.
    pub lease: Duration,
    /// How long a caller waits for another process's value before computing it itself.
    pub wait: Duration,
}

/// What the locks of one cache share: its connection, its settings, and where the release of an
/// abandoned lock runs. Cheap to clone; a cache without Redis has none.
#[derive(Clone)]
pub(crate) struct Locks {
    conn: Arc<Connection>,
    settings: LockSettings,
    tasks: Tasks,
}

impl Locks {
    pub(crate) fn new(conn: Arc<Connection>, settings: LockSettings, tasks: Tasks) -> Self {
        Locks {
            conn,
            settings,
            tasks,
        }
    }

    pub(crate) fn settings(&self) -> LockSettings {
        self.settings
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Takes `key`'s lock whoever holds it: the holder's store is then fenced off. For a
    /// write-through refresh, whose value must win over any computed before it.
    pub(crate) async fn take_over(&self, key: &str) -> Result<Lock, CommandError> {
        let lock_key = lock_key(key);
        let token = new_token();
        self.conn
            .set(&lock_key, token.as_bytes(), self.settings.lease)
            .await?;
        Ok(self.held(key, lock_key, token))
    }

    /// Tries once to take `key`'s lock, reading the entry in the same round trip.
    pub(crate) async fn try_acquire(&self, key: &str) -> Result<Attempt, CommandError> {
        self.attempt(key, true).await
    }

    /// [`Locks::try_acquire`] for a computation that began before asking (`lock = false`): an
    /// invalidation's mark (see `ACQUIRE`) is not taken over, since the computation may have read
    /// the data from before it.
    pub(crate) async fn try_acquire_begun(&self, key: &str) -> Result<Attempt, CommandError> {
        self.attempt(key, false).await
    }

    async fn attempt(&self, key: &str, over_mark: bool) -> Result<Attempt, CommandError> {
        let lock_key = lock_key(key);
        let token = new_token();
        let lease = millis(self.settings.lease).to_string();
        let over_mark: &[u8] = if over_mark { b"1" } else { b"0" };
        let (taken, entry): (i64, Option<Vec<u8>>) = self
            .conn
            .eval(
                &ACQUIRE,
                &[key, &lock_key],
                &[token.as_bytes(), lease.as_bytes(), over_mark],
            )
            .await?;
        let lock = (taken == 1).then(|| self.held(key, lock_key, token));
        Ok(Attempt { lock, entry })
    }

    /// [`Locks::try_acquire`] for many keys at once: one script per key, pipelined, one round
    /// trip per server. Per key, the attempt (`None`: its command failed), and the failures.
    pub(crate) async fn try_acquire_many(
        &self,
        keys: &[&str],
        chunk: usize,
    ) -> (Vec<Option<Attempt>>, Vec<CommandError>) {
        let lease = millis(self.settings.lease).to_string();
        let lock_keys: Vec<String> = keys.iter().map(|key| lock_key(key)).collect();
        let tokens: Vec<String> = keys.iter().map(|_| new_token()).collect();
        let calls: Vec<(Vec<&str>, Vec<&[u8]>)> = keys
            .iter()
            .zip(&lock_keys)
            .zip(&tokens)
            .map(|((key, lock), token)| {
                (
                    vec![*key, lock.as_str()],
                    vec![token.as_bytes(), lease.as_bytes(), b"1".as_slice()],
                )
            })
            .collect();
        let answers = self
            .conn
            .eval_many::<(i64, Option<Vec<u8>>)>(&ACQUIRE, &calls, chunk)
            .await;
        let attempts = answers
            .each
            .into_iter()
            .zip(keys.iter().zip(lock_keys).zip(tokens))
            .map(|(answer, ((key, lock_key), token))| {
                let (taken, entry) = answer?;
                let lock = (taken == 1).then(|| self.held(key, lock_key, token));
                Some(Attempt { lock, entry })
            })
            .collect();
        (attempts, answers.failures)
    }

    /// [`Locks::take_over`] for many keys at once (a batch's write-through): pipelined, one
    /// round trip per server. Per key, its lock (`None`: its command failed).
    pub(crate) async fn take_over_many(
        &self,
        keys: &[&str],
        chunk: usize,
    ) -> (Vec<Option<Lock>>, Vec<CommandError>) {
        let lease = millis(self.settings.lease);
        let lock_keys: Vec<String> = keys.iter().map(|key| lock_key(key)).collect();
        let tokens: Vec<String> = keys.iter().map(|_| new_token()).collect();
        let cmds = lock_keys
            .iter()
            .zip(&tokens)
            .map(|(lock, token)| {
                let mut cmd = redis::cmd("SET");
                cmd.arg(lock).arg(token).arg("PX").arg(lease);
                KeyedCmd { key: lock, cmd }
            })
            .collect();
        let answers = self.conn.run_each::<redis::Value>(cmds, chunk).await;
        let locks = answers
            .each
            .into_iter()
            .zip(keys.iter().zip(lock_keys).zip(tokens))
            .map(|(answer, ((key, lock_key), token))| {
                answer.map(|_| self.held(key, lock_key, token))
            })
            .collect();
        (locks, answers.failures)
    }

    /// Releases `locks` (each if still its holder's) and wakes their waiters: one round trip
    /// per server.
    pub(crate) async fn release_many(&self, locks: Vec<Lock>, chunk: usize) {
        if locks.is_empty() {
            return;
        }
        let calls: Vec<(Vec<&str>, Vec<&[u8]>)> = locks
            .iter()
            .map(|lock| (vec![lock.lock_key.as_str()], vec![lock.token.as_bytes()]))
            .collect();
        let _ = self.conn.eval_many::<i64>(&RELEASE, &calls, chunk).await;
        for lock in locks {
            lock.hand_over();
        }
    }

    /// Extends each of `locks` (if still its holder's) to `ttl` from now: one round trip per
    /// server. For the renewal of a batch's locks, and a failed refresh's backoff.
    pub(crate) async fn extend_many(&self, locks: &[&Lock], ttl: Duration, chunk: usize) {
        let ttl = millis(ttl).to_string();
        let calls: Vec<(Vec<&str>, Vec<&[u8]>)> = locks
            .iter()
            .map(|lock| {
                (
                    vec![lock.lock_key.as_str()],
                    vec![lock.token.as_bytes(), ttl.as_bytes()],
                )
            })
            .collect();
        let _ = self.conn.eval_many::<i64>(&EXTEND, &calls, chunk).await;
    }

    /// Runs `body` while renewing each of `locks` every third of its lease (all in one round
    /// trip per server), so a slow batch computation keeps its keys.
    pub(crate) async fn hold_all_while<F: Future>(
        &self,
        locks: &[&Lock],
        body: F,
        chunk: usize,
    ) -> F::Output {
        if locks.is_empty() {
            return body.await;
        }
        if crate::blocking::on_io_side() {
            let copies: Vec<Lock> = locks.iter().map(|lock| lock.renewer()).collect();
            let locks = self.clone();
            let _renewing = Renewing(tokio::spawn(async move {
                let copies: Vec<&Lock> = copies.iter().collect();
                locks.renew_all_forever(&copies, chunk).await
            }));
            return body.await;
        }
        let mut body = pin!(body);
        let mut renew = pin!(self.renew_all_forever(locks, chunk));
        std::future::poll_fn(|cx| {
            if let Poll::Ready(value) = body.as_mut().poll(cx) {
                return Poll::Ready(value);
            }
            let Poll::Pending = renew.as_mut().poll(cx);
            Poll::Pending
        })
        .await
    }

    async fn renew_all_forever(&self, locks: &[&Lock], chunk: usize) -> Infallible {
        let lease = self.settings.lease;
        loop {
            tokio::time::sleep(lease / 3).await;
            self.extend_many(locks, lease, chunk).await;
        }
    }

    fn held(&self, key: &str, lock_key: String, token: String) -> Lock {
        Lock {
            locks: self.clone(),
            key: key.to_string(),
            lock_key,
            token,
            done: false,
        }
    }
}

/// The name of `key`'s lock, which is also the channel its release is announced on:
/// `{prefix}:{function}:{fingerprint}:#{{args}}:lock` for the entry
/// `{prefix}:{function}:{fingerprint}:{{args}}`.
///
/// - Same hash tag as the entry, so both live in one cluster slot and one script can touch both.
/// - The `#` keeps locks out of the prefix a local tier asks Redis to track
///   (`{prefix}:{function}:{fingerprint}:{`, see `crate::local`): taking, renewing and releasing
///   a lock changes no entry, so no process is told of it.
pub(crate) fn lock_key(key: &str) -> String {
    let mut lock = String::with_capacity(key.len() + LOCK_MARKS);
    match key.rfind(":{") {
        Some(at) => {
            lock.push_str(&key[..=at]);
            lock.push('#');
            lock.push_str(&key[at + 1..]);
        }
        // Every entry key has its hash tag; nothing else is locked.
        None => lock.push_str(key),
    }
    lock.push_str(":lock");
    lock
}

/// What [`lock_key`] adds to an entry's key: `#` and `:lock`.
const LOCK_MARKS: usize = 6;

/// What an acquisition attempt found.
pub(crate) struct Attempt {
    /// The lock, if this attempt took it.
    pub lock: Option<Lock>,
    /// The entry's bytes, if the key holds a string.
    pub entry: Option<Vec<u8>>,
}

/// A held lock. Store with it (`crate::flow::store`) or [`Lock::release`] it; dropping it
/// releases in the background.
pub(crate) struct Lock {
    locks: Locks,
    key: String,
    lock_key: String,
    token: String,
    done: bool,
}

fn new_token() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

impl Lock {
    /// Runs `body` while renewing the lease every third of it, so a slow function keeps the key.
    pub(crate) async fn hold_while<F: Future>(&self, body: F) -> F::Output {
        if crate::blocking::on_io_side() {
            let renewer = self.renewer();
            let _renewing = Renewing(tokio::spawn(async move { renewer.renew_forever().await }));
            return body.await;
        }
        let mut body = pin!(body);
        let mut renew = pin!(self.renew_forever());
        std::future::poll_fn(|cx| {
            if let Poll::Ready(value) = body.as_mut().poll(cx) {
                return Poll::Ready(value);
            }
            let Poll::Pending = renew.as_mut().poll(cx);
            Poll::Pending
        })
        .await
    }

    async fn renew_forever(&self) -> Infallible {
        let lease = self.locks.settings.lease;
        loop {
            tokio::time::sleep(lease / 3).await;
            match self.extend(lease).await {
                Ok(1) => {}
                // Gone (invalidated, taken over, expired, Redis restarted empty): this
                // computation will not store; nothing more to renew.
                Ok(_) => return std::future::pending().await,
                // No answer this time (a timeout, a hiccup, the breaker open): the lock may
                // well still be ours, and the lease has two thirds left: try again.
                Err(_) => {}
            }
        }
    }

    /// A copy that renews this lock from a task of its own and never releases it. A blocking
    /// body runs to its end within one poll, so the renewal cannot be polled beside it: the
    /// task renews while the body runs on the caller's thread.
    fn renewer(&self) -> Lock {
        Lock {
            locks: self.locks.clone(),
            key: self.key.clone(),
            lock_key: self.lock_key.clone(),
            token: self.token.clone(),
            done: true,
        }
    }

    /// The key of the entry this lock guards.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// The lock's own key (also the channel its release is announced on).
    pub(crate) fn lock_key(&self) -> &str {
        &self.lock_key
    }

    /// This holder's token: a fenced store checks the lock still holds it.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// The connection the lock was taken on.
    pub(crate) fn connection(&self) -> &Arc<Connection> {
        &self.locks.conn
    }

    /// The lock was released by a script that checked its token (a fenced store, see
    /// `crate::flow::store`), or will lapse: dropping it must not release it again.
    pub(crate) fn hand_over(mut self) {
        self.done = true;
    }

    /// Releases without storing and wakes the waiters (they will try to take the lock).
    pub(crate) async fn release(mut self) {
        self.done = true;
        release(&self.locks.conn, &self.lock_key, &self.token).await;
    }

    /// Keeps the lock for `hold` more and then lets it expire: after a failed refresh, the stale
    /// value is served for that long before anyone tries again.
    pub(crate) async fn keep_for(mut self, hold: Duration) {
        self.done = true;
        let _ = self.extend(hold).await;
    }

    /// Sets the lock's expiry to `ttl` from now, if it is still ours: `Ok(1)` then.
    async fn extend(&self, ttl: Duration) -> Result<i64, CommandError> {
        let ttl = millis(ttl).to_string();
        self.locks
            .conn
            .eval(
                &EXTEND,
                &[&self.lock_key],
                &[self.token.as_bytes(), ttl.as_bytes()],
            )
            .await
    }
}

/// A renewal task, stopped when the body it renews for ends (or is dropped).
struct Renewing(tokio::task::JoinHandle<Infallible>);

impl Drop for Renewing {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn release(conn: &Connection, lock_key: &str, token: &str) {
    let _: Result<i64, _> = conn.eval(&RELEASE, &[lock_key], &[token.as_bytes()]).await;
}

impl Drop for Lock {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Cancelled or panicking holder: release from a task (which `Cache::flush` waits for),
        // or let the lease run out.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let conn = self.locks.conn.clone();
            let lock_key = std::mem::take(&mut self.lock_key);
            let token = std::mem::take(&mut self.token);
            let releasing = async move { release(&conn, &lock_key, &token).await };
            self.locks.tasks.spawn_on(&runtime, releasing);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lock_key;

    #[test]
    fn a_lock_shares_its_entrys_slot_but_not_its_tracked_prefix() {
        let entry = "app:shop::product:0a1b2c3d:{000000000000000000000000000000ff}";
        let lock = lock_key(entry);
        assert_eq!(
            lock,
            "app:shop::product:0a1b2c3d:#{000000000000000000000000000000ff}:lock"
        );
        assert_eq!(lock.len(), entry.len() + super::LOCK_MARKS);
        // The local tier tracks `{prefix}:{function}:{fingerprint}:{`.
        assert!(entry.starts_with("app:shop::product:0a1b2c3d:{"));
        assert!(!lock.starts_with("app:shop::product:0a1b2c3d:{"));
        // Same hash tag, so same slot: `connection::cluster::slot_map`'s tests check it.
    }
}
