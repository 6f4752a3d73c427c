//! What is stored for each return shape: every value, only `Ok`, only `Some` (or `None` too).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::spec::SiteSpec;

#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached: a cached value must implement `serde::Serialize` and `serde::de::DeserializeOwned`",
    label = "the value stored in Redis",
    note = "derive `serde::Serialize` and `serde::Deserialize` for it; borrowed types such as `&str` cannot be decoded from Redis, return an owned type such as `String`"
)]
#[doc(hidden)]
pub trait CacheValue: Serialize + DeserializeOwned {}
impl<T: Serialize + DeserializeOwned> CacheValue for T {}

#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be kept in the local tier: with `local = N` a cached value must implement `Clone` (and be `Send + Sync + 'static`)",
    label = "the local tier hands out clones of this value",
    note = "derive `Clone` for it, or remove `local = ...` to read every hit from Redis"
)]
#[doc(hidden)]
pub trait LocalValue: Clone + Send + Sync + 'static {}
impl<T: Clone + Send + Sync + 'static> LocalValue for T {}

/// Decides, per return value, what goes to Redis and for how long.
///
/// The impls put no bound on the stored type: `cached` requires `Stored: CacheValue` itself, so a
/// type that cannot be stored is reported as such, once, with [`CacheValue`]'s message.
#[doc(hidden)]
pub trait Policy<R> {
    type Stored;
    /// The value to store and its TTL in seconds, or `None` to store nothing.
    fn to_store<'a>(value: &'a R, spec: &SiteSpec) -> Option<(&'a Self::Stored, u64)>;
    fn from_stored(stored: Self::Stored) -> R;
    /// Whether `value` is the shape's empty value (`None`), which single-flight followers can be
    /// given without the leader's bytes.
    fn is_absent(_value: &R) -> bool {
        false
    }
    /// The empty value, for followers of a leader whose value [`Policy::is_absent`].
    fn absent() -> Option<R> {
        None
    }
}

/// Any return value is stored.
#[doc(hidden)]
#[derive(Debug)]
pub struct Plain;

impl<T> Policy<T> for Plain {
    type Stored = T;
    fn to_store<'a>(value: &'a T, spec: &SiteSpec) -> Option<(&'a T, u64)> {
        Some((value, spec.ttl_secs))
    }
    fn from_stored(stored: T) -> T {
        stored
    }
}

/// `Result<T, E>`: `Ok(T)` is stored; errors never are.
#[doc(hidden)]
#[derive(Debug)]
pub struct OkOnly;

impl<T, E> Policy<Result<T, E>> for OkOnly {
    type Stored = T;
    fn to_store<'a>(value: &'a Result<T, E>, spec: &SiteSpec) -> Option<(&'a T, u64)> {
        value.as_ref().ok().map(|v| (v, spec.ttl_secs))
    }
    fn from_stored(stored: T) -> Result<T, E> {
        Ok(stored)
    }
}

/// `Option<T>`: `Some(T)` is stored, `None` is not.
#[doc(hidden)]
#[derive(Debug)]
pub struct SomeOnly;

impl<T> Policy<Option<T>> for SomeOnly {
    type Stored = T;
    fn to_store<'a>(value: &'a Option<T>, spec: &SiteSpec) -> Option<(&'a T, u64)> {
        value.as_ref().map(|v| (v, spec.ttl_secs))
    }
    fn from_stored(stored: T) -> Option<T> {
        Some(stored)
    }
    fn is_absent(value: &Option<T>) -> bool {
        value.is_none()
    }
    fn absent() -> Option<Option<T>> {
        Some(None)
    }
}

/// `Option<T>` with `none_ttl`: `None` is stored too, for `none_ttl` seconds.
#[doc(hidden)]
#[derive(Debug)]
pub struct SomeOrNone;

impl<T> Policy<Option<T>> for SomeOrNone {
    type Stored = Option<T>;
    fn to_store<'a>(value: &'a Option<T>, spec: &SiteSpec) -> Option<(&'a Option<T>, u64)> {
        let ttl = if value.is_some() {
            spec.ttl_secs
        } else {
            spec.none_ttl_secs
        };
        Some((value, ttl))
    }
    fn from_stored(stored: Option<T>) -> Option<T> {
        stored
    }
}
