//! The entry point of a function with `local = N`: a decoded copy in this process answers
//! first, before any future is made, and values read from Redis are copied for the next calls.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use super::{Body, answer, in_tokio, outcome, write_through_requested};
use crate::cache::Cache;
use crate::envelope::unix_ms;
use crate::freshness;
use crate::key::CallKey;
use crate::local::{Keep, LocalCopies};
use crate::policy::{Policy, Rules, ValueCodec};
use crate::site::Site;
use crate::stats::Outcome;

/// [`super::cached`] for a function with `local = N`.
///
/// Not `async`: the local hit is looked up when the call is made (on the first poll of the
/// annotated function, whose body this is called from), and answers without a future of its
/// own. The rest of the flow is boxed: a local hit neither builds nor moves its state (the
/// call's future holds a [`LocalCall`], the value or a pointer), and a call that goes on to Redis
/// pays one allocation beside its round trip.
#[doc(hidden)]
pub fn cached_local<P, R, B>(
    site: &'static Site,
    cache: &Cache,
    call: CallKey,
    codec: ValueCodec<P::Stored>,
    copies: LocalCopies<P::Stored>,
    rules: Rules<'_, P::Value>,
    body: B,
) -> LocalCall<R, impl Future<Output = R>>
where
    P: Policy<R>,
    B: Body<R, P::Value>,
{
    site.register(call.self_type());
    let reporting = outcome::take_request();
    let local = match (cache.local(), cache.shared_connection(), call.args()) {
        (Some(tier), Some(conn), Some(args)) if in_tokio() => copies
            .store(tier, site, conn, freshness::local_ttl(&site.spec))
            .map(|store| (tier, store, args)),
        _ => None,
    };
    let keep = match local {
        Some((tier, store, args)) => {
            if write_through_requested() {
                // The write-through replaces the entry: this process's copy goes now.
                copies.invalidate(&store, args);
            } else if let Some((value, meta)) = copies.get(&store, args, unix_ms(SystemTime::now()))
            {
                site.answered(Outcome::LocalHit);
                if reporting {
                    outcome::served(meta);
                    outcome::finish(Outcome::LocalHit);
                }
                return LocalCall::Hit(Some(P::from_stored(value)));
            }
            // Taken before the read from Redis: a copy of what it reads is kept only if no
            // invalidation of the key came in between.
            let watch = copies.watch(&store, args);
            Some((tier, store, watch))
        }
        None => None,
    };
    LocalCall::Flow(Box::pin(async move {
        let (value, outcome) = match &keep {
            Some((tier, store, watch)) => {
                let keep = Keep {
                    tier,
                    site,
                    copies,
                    store,
                    watch: *watch,
                };
                answer::<P, R>(
                    site,
                    cache,
                    call,
                    codec,
                    &rules,
                    body,
                    Some(&keep),
                    reporting,
                )
                .await
            }
            // No tier (or no key): the Redis flow of `cached`.
            None => answer::<P, R>(site, cache, call, codec, &rules, body, None, reporting).await,
        };
        site.answered(outcome);
        if reporting {
            outcome::finish(outcome);
        }
        value
    }))
}

/// The future of a call with `local = N`: the local hit's value, or the rest of the flow, boxed.
#[doc(hidden)]
#[must_use = "a call's value is returned by awaiting it"]
pub enum LocalCall<R, F> {
    /// Answered by a copy (taken by the first poll).
    Hit(Option<R>),
    /// Redis, the function, and the copy kept for the next calls.
    Flow(Pin<Box<F>>),
}

// Nothing in it is pinned in place: the value is moved out whole, and the flow is pinned in its
// box.
impl<R, F> Unpin for LocalCall<R, F> {}

impl<R, F: Future<Output = R>> Future for LocalCall<R, F> {
    type Output = R;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R> {
        match self.get_mut() {
            LocalCall::Hit(value) => Poll::Ready(value.take().expect("polled after it returned")),
            LocalCall::Flow(flow) => flow.as_mut().poll(cx),
        }
    }
}

impl<R, F> std::fmt::Debug for LocalCall<R, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LocalCall::Hit(_) => "LocalCall::Hit",
            LocalCall::Flow(_) => "LocalCall::Flow",
        })
    }
}
