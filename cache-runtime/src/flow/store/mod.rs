//! The store protocol, in one place: a value is sealed into an envelope (header, payload, how
//! long Redis keeps it), its tags are added (each tag's set gains the key, and a tag invalidated
//! since the computation began fences the store off), then it is stored and the key's lock
//! released in one script that stores only while the lock is still this computation's (an
//! invalidation, a clear or a write-through deletes or takes over the lock, fencing the store
//! off). The release wakes the processes waiting for the lock.
//!
//! - here: sealing a value ([`Envelope`]) and what a call hands its followers;
//! - [`write`]: storing (or removing) and releasing, one key or a batch's;
//! - [`tags`]: adding an entry to its tags, fenced by their invalidations.
//!
//! A store runs in a spawned task ([`crate::Cache::flush`] waits for it), so a caller cancelled
//! while it waits for its store does not lose it.

mod tags;
mod write;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::task::JoinHandle;

use super::{Call, Ran};
use crate::cache::Cache;
use crate::codec::{Codec, CodecError, Limits};
use crate::envelope::Meta;
use crate::freshness;
use crate::policy::Policy;
use crate::site::Site;
use crate::stampede::lock::Lock;
use crate::stampede::single_flight::{Handoff, Leader};
use crate::stats::Count;

pub(super) use write::{store, store_many};

/// What a computation leaves under its key, with the release of its lock.
pub(super) enum Write {
    /// The new entry.
    Put(Envelope),
    /// No entry: the one there is removed (a refresh found nothing to store).
    Remove,
    /// Nothing changes.
    Nothing,
}

impl From<Sealed> for Write {
    fn from(sealed: Sealed) -> Write {
        sealed.map_or(Write::Nothing, Write::Put)
    }
}

/// An encoded value and how long Redis should keep it; `None` when the policy stores nothing.
pub(super) type Sealed = Option<Envelope>;

pub(super) struct Envelope {
    pub(super) bytes: Arc<Vec<u8>>,
    /// Redis's `PX`: the TTL and the stale window.
    pub(super) keep: Duration,
    /// The entry's tags (`tags(...)`, `tags = |v| ...`), added before it is stored.
    pub(super) tags: Vec<String>,
    /// When the function began: a tag invalidated after it fences the store off.
    pub(super) started: Instant,
    /// Its header: when it was computed, when it stops being fresh.
    pub(super) meta: Meta,
}

impl<P, R> Call<'_, P, R>
where
    P: Policy<R>,
{
    /// The envelope of `value` and how long Redis should keep it, if the policy stores it.
    pub(super) fn seal(&self, value: &R, ran: &Ran) -> Sealed {
        let (stored, ttl) = self.lifetime(value)?;
        let tags = self.rules.tags_for(&ran.tags, P::value(value));
        let encode =
            |meta, compress_above, limits| self.codec.seal(stored, meta, compress_above, limits);
        seal(
            self.site,
            self.cache,
            self.codec.codec(),
            (ttl, tags),
            ran,
            encode,
        )
    }

    /// What of `value` the policy stores, and for how long: the attribute's `ttl` (or
    /// `none_ttl`), or what its expression or closure says for this call.
    pub(super) fn lifetime<'v>(&self, value: &'v R) -> Option<(&'v P::Stored, Duration)> {
        let (stored, ttl_secs) = P::to_store(value, &self.site.spec)?;
        let rule = match P::value(value) {
            Some(value) => self.rules.ttl_for(value),
            None => self.rules.none_ttl_for(),
        };
        let ttl = rule.map_or(Duration::from_secs(ttl_secs), bounded);
        Some((stored, ttl))
    }

    /// Whether `unless` lets `value` be stored (a `None` or an `Err` it does not judge).
    pub(super) fn keeps(&self, value: &R) -> bool {
        P::value(value).is_none_or(|value| self.rules.keeps(value))
    }

    /// Seals `value`, hands it to the followers, and returns what may be stored.
    pub(super) fn share(&self, leader: Leader<'_>, value: &R, ran: &Ran) -> Sealed {
        let sealed = self.seal(value, ran);
        leader.publish(self.handoff(value, &sealed));
        self.storable(value, sealed)
    }

    /// `sealed`, unless the attribute's `unless` says `value` is not to be stored (its
    /// followers still get it, from `sealed`).
    pub(super) fn storable(&self, value: &R, sealed: Sealed) -> Sealed {
        match self.keeps(value) {
            true => sealed,
            false => None,
        }
    }

    /// What a leader's followers get for `value`, given its envelope (if any).
    pub(super) fn handoff(&self, value: &R, sealed: &Sealed) -> Handoff {
        match sealed {
            Some(envelope) => Handoff::Entry(envelope.bytes.clone()),
            None if P::is_absent(value) => Handoff::Absent,
            None => Handoff::RunYourself,
        }
    }

    /// Stores in a spawned task, so that the store lands even if this caller is cancelled. The
    /// task says whether it stored.
    pub(super) fn spawn_store(&self, sealed: Sealed, lock: Lock) -> JoinHandle<bool> {
        let (site, cache) = (self.site, self.cache.clone());
        self.cache
            .tasks()
            .spawn(async move { store(site, &cache, sealed, lock).await })
    }

    /// Removes the key's entry and releases `lock`, in a spawned task, if the lock is still held.
    pub(super) fn spawn_remove(&self, lock: Lock) -> JoinHandle<()> {
        let site = self.site;
        self.cache
            .tasks()
            .spawn(async move { write::remove(site, lock).await })
    }

    /// Waits for a spawned store (or removal), unless the cache stores in the background, and
    /// returns what the task returned (`None` if not waited for). Dropping the handle (this
    /// caller cancelled) leaves the store running.
    pub(super) async fn landed<T>(&self, storing: JoinHandle<T>) -> Option<T> {
        if self.cache.background_stores() {
            return None;
        }
        // A panic in the store task is not the caller's: it has its value.
        storing.await.ok()
    }

    /// A value this call has just stored (in `envelope`) is kept in the local tier, when the
    /// function has one and the store's own announcement can be told apart: the next call is
    /// then a local hit, not a Redis read.
    pub(super) fn keep_stored(&self, value: &R, envelope: (Meta, usize)) {
        let (Some(keep), Some((stored, _))) = (self.keep, self.lifetime(value)) else {
            return;
        };
        let (meta, bytes) = envelope;
        keep.keep_stored(self.key, stored, meta, bytes);
    }
}

/// The envelope `encode` makes (in `codec`), to be kept `ttl` (with jitter, and the stale
/// window) with `tags`; `None` if it cannot be stored.
pub(super) fn seal(
    site: &'static Site,
    cache: &Cache,
    codec: Codec,
    (ttl, tags): (Duration, Vec<String>),
    ran: &Ran,
    encode: impl FnOnce(Meta, usize, Limits) -> Result<Vec<u8>, CodecError>,
) -> Sealed {
    // Only a `ttl` or `none_ttl` expression or closure can be that short.
    if ttl < Duration::from_secs(1) {
        site.warn_short_ttl(ttl);
        return None;
    }
    let (fresh, keep) = freshness::lifetimes(ttl.as_secs(), &site.spec, fastrand::f64());
    let meta = Meta::new(SystemTime::now(), fresh, ran.took);
    let limits = cache.limits();
    match encode(meta, limits.compress_above, limits.decode) {
        Ok(bytes) => {
            site.read_back(codec);
            Some(Envelope {
                bytes: Arc::new(bytes),
                keep,
                tags,
                started: ran.started,
                meta,
            })
        }
        Err(err @ CodecError::DoesNotReadBack(_)) => {
            site.did_not_read_back(codec, &err);
            None
        }
        Err(err) => {
            site.problem(
                Count::Errors,
                "value could not be encoded; not stored",
                &err,
            );
            None
        }
    }
}

/// A TTL a `ttl` expression or closure gave: `u64::MAX` seconds is kept as long as a TTL can be
/// (and does not overflow the arithmetic that follows).
pub(super) fn bounded(ttl: Duration) -> Duration {
    ttl.min(freshness::MAX_TTL)
}
