//! The outcome of one call, for the `{fn}_with_outcome` companion: which [`Outcome`] it was and,
//! when it served an entry, how old that entry is and how long it stays fresh.
//!
//! The companion runs the call inside [`with_outcome`], which marks it (a task-local the flow
//! takes as the call begins, like a `_refresh`'s request), so calls the function's body makes
//! report nothing; the flow notes the entry it serves and, as the call ends, its outcome.

use std::cell::RefCell;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::envelope::{Meta, unix_ms};
use crate::stats::Outcome;

tokio::task_local! {
    /// Set by [`with_outcome`] around one call of a cached function.
    static REPORT: RefCell<Report>;
}

/// Where one call's report is.
enum Report {
    /// Asked for; no call has taken it yet.
    Asked,
    /// Taken by the call that reports, with the entry it served so far.
    Taken(Option<Meta>),
    /// The call ended.
    Done(CallOutcome),
}

/// How one call of a cached function was answered, from its `{fn}_with_outcome` companion: for
/// an `X-Cache` and an `Age` header, or a log field per request.
///
/// ```
/// # use redis_cached::{CallOutcome, Outcome};
/// fn headers(outcome: &CallOutcome) -> Vec<(&'static str, String)> {
///     let mut headers = vec![("x-cache", outcome.outcome().as_str().to_uppercase())];
///     if let Some(age) = outcome.age() {
///         headers.push(("age", age.as_secs().to_string()));
///     }
///     headers
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallOutcome {
    outcome: Outcome,
    /// The header of the entry served, if the call served one.
    served: Option<Meta>,
    /// When the call ended, unix milliseconds.
    at_ms: u64,
}

impl CallOutcome {
    fn new(outcome: Outcome, served: Option<Meta>) -> Self {
        CallOutcome {
            outcome,
            served,
            at_ms: unix_ms(SystemTime::now()),
        }
    }

    /// Which outcome the call was (each call counts once in its function's stats).
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// When the value served was computed (by this process or another): `None` when the call
    /// served no stored entry but computed the value itself (a miss, a refresh, a fallback, a
    /// bypassed call).
    pub fn computed_at(&self) -> Option<SystemTime> {
        self.served
            .map(|meta| UNIX_EPOCH + Duration::from_millis(meta.computed_at_ms))
    }

    /// How old the entry served was when the call ended (from its computed-at time, so across
    /// processes it is as exact as their clocks): what an `Age` header carries.
    pub fn age(&self) -> Option<Duration> {
        self.served
            .map(|meta| Duration::from_millis(self.at_ms.saturating_sub(meta.computed_at_ms)))
    }

    /// How long the entry served stays fresh after the call ended; zero for a stale one.
    pub fn time_left(&self) -> Option<Duration> {
        self.served
            .map(|meta| Duration::from_millis(meta.fresh_until_ms.saturating_sub(self.at_ms)))
    }
}

/// Runs `call` (a call of a `#[redis_cache]` function) and returns its value with how it was
/// answered. Calls the function's body makes are not reported.
#[doc(hidden)]
pub async fn with_outcome<F: Future>(call: F) -> (F::Output, CallOutcome) {
    REPORT
        .scope(RefCell::new(Report::Asked), async move {
            let value = call.await;
            let report = REPORT.with(|report| report.replace(Report::Asked));
            let outcome = match report {
                Report::Done(outcome) => outcome,
                // The call did not go through the cache's flow (it cannot: every cached call
                // does); say it ran uncached rather than invent an entry.
                Report::Asked | Report::Taken(_) => CallOutcome::new(Outcome::Fallback, None),
            };
            (value, outcome)
        })
        .await
}

/// For the flow, as a call begins: whether it reports its outcome. Taken, so it applies to this
/// call only.
pub(crate) fn take_request() -> bool {
    REPORT
        .try_with(|report| {
            let mut report = report.borrow_mut();
            let asked = matches!(*report, Report::Asked);
            if asked {
                *report = Report::Taken(None);
            }
            asked
        })
        .unwrap_or(false)
}

/// The reporting call serves the entry `meta` heads.
pub(crate) fn served(meta: Meta) {
    let _ = REPORT.try_with(|report| {
        if let Report::Taken(served) = &mut *report.borrow_mut() {
            *served = Some(meta);
        }
    });
}

/// The reporting call ends, answered as `outcome`.
pub(crate) fn finish(outcome: Outcome) {
    let _ = REPORT.try_with(|report| {
        let mut report = report.borrow_mut();
        if let Report::Taken(served) = *report {
            // A value the call computed serves no entry, whatever it read before.
            let served = match outcome {
                Outcome::Hit | Outcome::Stale | Outcome::Coalesced | Outcome::LocalHit => served,
                Outcome::Miss | Outcome::Fallback | Outcome::Bypassed => None,
            };
            *report = Report::Done(CallOutcome::new(outcome, served));
        }
    });
}
