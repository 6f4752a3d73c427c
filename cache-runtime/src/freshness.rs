//! How long entries live and what a found entry is worth: fresh, due for early refresh, stale, or
//! expired.
//!
//! Every entry has two lifetimes. The *logical* one (`fresh_until` in the envelope) is the TTL,
//! shortened by a random jitter so that keys written together do not expire together. The
//! *physical* one (Redis's `PX`) adds the function's stale window, during which the old value may
//! still be served while one caller refreshes it.
//!
//! Early refresh is XFetch (Vattani, Chierichetti and Lowenstein, "Optimal Probabilistic Cache
//! Stampede Prevention", VLDB 2015): a hit recomputes ahead of expiry when
//! `now - delta * beta * ln(u) >= expiry`, with `delta` the time the last computation took, `u`
//! uniform in (0, 1] and `beta = 1`. The closer the expiry and the slower the function, the likelier
//! a refresh; under load exactly one caller refreshes shortly before expiry, and none sees a miss.

use std::time::Duration;

use crate::config::{DEFAULT_LOCAL_TTL, DEFAULT_TTL_JITTER};
use crate::envelope::Meta;
use crate::spec::SiteSpec;

/// The longest an entry is kept, whatever a literal, an expression or a closure says: ten years
/// (so no arithmetic on a TTL of `u64::MAX` seconds overflows, and Redis accepts the `PX`).
pub(crate) const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// XFetch's `beta`: 1 is the paper's optimum for a single expiring key. Larger values refresh
/// earlier.
pub(crate) const XFETCH_BETA: f64 = 1.0;

/// What a decoded entry is good for at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// Serve it.
    Fresh,
    /// Serve it, and this caller should recompute it ahead of expiry (XFetch).
    RefreshEarly,
    /// Past its TTL but inside the stale window: serve it while one caller refreshes.
    Stale,
    /// Not servable: recompute.
    Expired,
}

/// How long `spec`'s local copies may be served without a fresh look at Redis (`local_ttl`).
pub(crate) fn local_ttl(spec: &SiteSpec) -> Duration {
    match spec.local_ttl_secs {
        0 => DEFAULT_LOCAL_TTL,
        secs => Duration::from_secs(secs),
    }
}

/// The fraction of the TTL by which `spec`'s expiries are randomly shortened.
fn jitter(spec: &SiteSpec) -> f64 {
    spec.jitter
        .map_or(DEFAULT_TTL_JITTER, f64::from)
        .clamp(0.0, 0.99)
}

/// Judges `meta` at `now_ms` (unix milliseconds); `u` is a uniform draw in (0, 1].
pub(crate) fn judge(meta: &Meta, now_ms: u64, spec: &SiteSpec, u: f64) -> Freshness {
    if now_ms >= meta.fresh_until_ms {
        let stale_until = meta
            .fresh_until_ms
            .saturating_add(spec.stale_secs.saturating_mul(1000));
        return if now_ms < stale_until {
            Freshness::Stale
        } else {
            Freshness::Expired
        };
    }
    if spec.early_refresh && meta.compute_micros > 0 {
        let delta_ms = f64::from(meta.compute_micros) / 1000.0;
        let ahead_ms = -delta_ms * XFETCH_BETA * u.ln();
        if now_ms as f64 + ahead_ms >= meta.fresh_until_ms as f64 {
            return Freshness::RefreshEarly;
        }
    }
    Freshness::Fresh
}

/// A value's lifetimes: how long it is fresh (TTL less jitter) and how long Redis keeps it
/// (fresh plus the stale window). `u` is a uniform draw in [0, 1).
pub(crate) fn lifetimes(ttl_secs: u64, spec: &SiteSpec, u: f64) -> (Duration, Duration) {
    let ttl = Duration::from_secs(ttl_secs).min(MAX_TTL);
    let jitter = jitter(spec);
    let fresh = ttl.mul_f64(1.0 - jitter * u).max(Duration::from_millis(1));
    let keep = fresh
        .saturating_add(Duration::from_secs(spec.stale_secs))
        .min(MAX_TTL);
    (fresh, keep)
}

/// A uniform draw in (0, 1], for [`judge`] (`ln(0)` would be infinite); never below
/// [`MIN_DRAW`].
pub(crate) fn draw_open() -> f64 {
    (1.0 - fastrand::f64()).max(MIN_DRAW)
}

/// The smallest draw: 2⁻⁵³, the resolution of a uniform `f64` in [0, 1).
const MIN_DRAW: f64 = f64::EPSILON / 2.0;

/// [`judge`] at `now_ms` with a draw of [`draw_open`], made only where it can change the
/// answer. A draw puts the early refresh at most `-ln(MIN_DRAW)` (36.7) computation times
/// before expiry, so further from it the entry is fresh whatever the draw: most hits then draw
/// no random number and take no logarithm.
pub(crate) fn judge_drawing(meta: &Meta, now_ms: u64, spec: &SiteSpec) -> Freshness {
    let far = now_ms < meta.fresh_until_ms
        && (!spec.early_refresh
            || meta.compute_micros == 0
            || (now_ms as f64) + earliest_refresh_ms(meta) < meta.fresh_until_ms as f64);
    if far {
        return Freshness::Fresh;
    }
    judge(meta, now_ms, spec, draw_open())
}

/// How long before expiry an early refresh can begin at the earliest: with the smallest draw.
fn earliest_refresh_ms(meta: &Meta) -> f64 {
    f64::from(meta.compute_micros) / 1000.0 * XFETCH_BETA * -MIN_DRAW.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drawing only near expiry changes no answer: far from it, every draw says fresh; at the
    /// earliest point a draw can matter, the smallest one refreshes.
    #[test]
    fn the_draw_is_skipped_only_where_no_draw_could_refresh() {
        let s = spec(0, true, 0.0);
        // A 100 ms computation: an early refresh at most 3.67 s before expiry.
        let m = meta(10_000, 100);
        let earliest = earliest_refresh_ms(&m);
        assert!((3_673.0..3_674.0).contains(&earliest), "{earliest}");
        let far = 10_000 - 3_674;
        assert_eq!(judge_drawing(&m, far, &s), Freshness::Fresh);
        assert_eq!(judge(&m, far, &s, MIN_DRAW), Freshness::Fresh);
        assert_eq!(judge(&m, far + 1, &s, MIN_DRAW), Freshness::RefreshEarly);
        assert_eq!(judge_drawing(&m, 10_000, &s), Freshness::Expired);
        for _ in 0..1000 {
            assert!(draw_open() >= MIN_DRAW && draw_open() <= 1.0);
        }
    }

    fn spec(stale_secs: u64, early_refresh: bool, jitter: f32) -> SiteSpec {
        SiteSpec {
            module: "m",
            function: "f",
            name: None,
            ttl_secs: 10,
            none_ttl_secs: 0,
            version: 0,
            value_type: "u32",
            stale_secs,
            early_refresh,
            jitter: Some(jitter),
            wait_for_lock: true,
            local_entries: 0,
            local_ttl_secs: 0,
            tags: "",
            stores_none: false,
            batch: false,
            codec: None,
        }
    }

    fn meta(fresh_until_ms: u64, compute_ms: u32) -> Meta {
        Meta {
            computed_at_ms: 0,
            fresh_until_ms,
            compute_micros: compute_ms * 1000,
        }
    }

    #[test]
    fn stale_window_follows_logical_expiry() {
        let s = spec(5, false, 0.0);
        let m = meta(10_000, 0);
        assert_eq!(judge(&m, 9_999, &s, 1.0), Freshness::Fresh);
        assert_eq!(judge(&m, 10_000, &s, 1.0), Freshness::Stale);
        assert_eq!(judge(&m, 14_999, &s, 1.0), Freshness::Stale);
        assert_eq!(judge(&m, 15_000, &s, 1.0), Freshness::Expired);
        assert_eq!(
            judge(&m, 10_000, &spec(0, false, 0.0), 1.0),
            Freshness::Expired
        );
    }

    #[test]
    fn xfetch_refreshes_only_near_expiry_and_only_when_enabled() {
        let s = spec(0, true, 0.0);
        // The last computation took 100 ms; u = 1/e puts the threshold 100 ms before expiry.
        let m = meta(10_000, 100);
        let u = (-1.0f64).exp();
        assert_eq!(judge(&m, 9_899, &s, u), Freshness::Fresh);
        assert_eq!(judge(&m, 9_901, &s, u), Freshness::RefreshEarly);
        // u = 1 never refreshes early; a function that took no time neither.
        assert_eq!(judge(&m, 9_999, &s, 1.0), Freshness::Fresh);
        assert_eq!(judge(&meta(10_000, 0), 9_999, &s, 1e-9), Freshness::Fresh);
        assert_eq!(judge(&m, 9_901, &spec(0, false, 0.0), u), Freshness::Fresh);
    }

    #[test]
    fn xfetch_probability_matches_the_paper() {
        // P(refresh) at distance d before expiry is exp(-d / (delta * beta)).
        let s = spec(0, true, 0.0);
        let m = meta(10_000, 100);
        let trials = 100_000;
        let refreshed = (0..trials)
            .filter(|_| judge(&m, 9_800, &s, draw_open()) == Freshness::RefreshEarly)
            .count();
        let p = refreshed as f64 / f64::from(trials);
        let expected = (-2.0f64).exp();
        assert!((p - expected).abs() < 0.01, "p = {p}, expected {expected}");
    }

    #[test]
    fn any_ttl_or_stale_window_is_kept_at_most_ten_years_without_overflowing() {
        for jitter in [0.0, 0.1, 0.5] {
            let mut s = spec(u64::MAX, true, jitter);
            s.ttl_secs = u64::MAX;
            let (fresh, keep) = lifetimes(u64::MAX, &s, 0.0);
            assert_eq!((fresh, keep), (MAX_TTL, MAX_TTL));
            let meta = Meta::new(std::time::SystemTime::now(), fresh, Duration::ZERO);
            assert_eq!(
                judge(&meta, meta.fresh_until_ms + 1, &s, 1.0),
                Freshness::Stale
            );
        }
    }

    #[test]
    fn jitter_shortens_by_at_most_its_fraction_and_stale_is_added() {
        let s = spec(30, true, 0.1);
        assert_eq!(
            lifetimes(300, &s, 0.0),
            (Duration::from_secs(300), Duration::from_secs(330))
        );
        let (fresh, keep) = lifetimes(300, &s, 0.999_999);
        assert!(fresh > Duration::from_secs(269) && fresh < Duration::from_secs(271));
        assert_eq!(keep, fresh + Duration::from_secs(30));
        let (fresh, _) = lifetimes(300, &spec(0, true, 0.0), 0.999);
        assert_eq!(fresh, Duration::from_secs(300));
    }
}
