//! The lookup: the leader reads the key's entry and serves it, refreshes it, or goes on to the
//! miss; when Redis cannot be read, the function runs uncached.

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use super::refresh::RefreshReason;
use super::store::Envelope;
use super::{Body, Call, Computed};
use crate::connection::CommandError;
use crate::envelope::{Meta, unix_ms};
use crate::freshness::{self, Freshness};
use crate::policy::Policy;
use crate::stampede::single_flight::{Handoff, Leader};
use crate::stats::{Count, Outcome};

impl<P, R> Call<'_, P, R>
where
    P: Policy<R>,
{
    /// The lookup, and what follows it. Only the hit is handled in place: everything else
    /// (fallback, refresh, lock and computation) runs in a boxed future, so the future every
    /// call carries is small and a hit does not copy kilobytes of state it never uses.
    pub(super) async fn lead(
        self,
        leader: Leader<'_>,
        body: impl Body<R, P::Value>,
    ) -> (R, Outcome) {
        let site = self.site;
        let found = match site.redis(self.conn.get(self.key)).await {
            Ok(found) => found,
            Err(CommandError::WrongType) => {
                site.count(Count::Invalid);
                None
            }
            Err(err) => return Box::pin(self.fall_back(leader, body.run(), err)).await,
        };

        if let Some(bytes) = found {
            match self.codec.open(&bytes, self.cache.limits().decode) {
                Ok((meta, value)) => {
                    let now = unix_ms(SystemTime::now());
                    let why = match freshness::judge_drawing(&meta, now, &site.spec) {
                        Freshness::Fresh => {
                            if let Some(keep) = self.keep {
                                keep.keep(self.key, &value, meta, bytes.len());
                            }
                            leader.publish_with(|| Handoff::Entry(Arc::new(bytes)));
                            self.served(meta);
                            return (P::from_stored(value), Outcome::Hit);
                        }
                        Freshness::RefreshEarly => Some(RefreshReason::Early),
                        Freshness::Stale => Some(RefreshReason::Stale),
                        Freshness::Expired => None,
                    };
                    if let Some(why) = why {
                        // The followers are served at once; only this call refreshes.
                        leader.publish_with(|| Handoff::Entry(Arc::new(bytes)));
                        return Box::pin(self.refresh(meta, value, body, why)).await;
                    }
                }
                Err(invalid) => {
                    site.problem(
                        Count::Invalid,
                        "unreadable entry; recomputed and overwritten",
                        &invalid,
                    );
                }
            }
        }
        Box::pin(self.compute(leader, body.run())).await
    }

    /// The lookup failed: run the function without the cache.
    async fn fall_back(
        self,
        leader: Leader<'_>,
        body: impl Future<Output = Computed<R>>,
        err: CommandError,
    ) -> (R, Outcome) {
        self.site
            .command_failed("lookup failed; the call ran uncached", &err);
        let (value, ran) = self.execute(body, None).await;
        if let Some(keep) = self.keep {
            // Redis is unreachable: the local tier memoizes alone, for `local_ttl` at most.
            let sealed = self.seal(&value, &ran);
            if let (Some(Envelope { bytes, .. }), Some((stored, ttl))) =
                (&sealed, self.lifetime(&value))
                && self.keeps(&value)
            {
                let now = SystemTime::now();
                let meta = Meta::new(now, ttl, ran.took);
                keep.keep(self.key, stored, meta, bytes.len());
            }
            leader.publish(self.handoff(&value, &sealed));
            return (value, Outcome::Fallback);
        }
        // Nothing is stored: encode only if someone waits for this value.
        leader.publish_with(|| self.handoff(&value, &self.seal(&value, &ran)));
        (value, Outcome::Fallback)
    }
}
