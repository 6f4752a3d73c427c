//! What is stored for each return shape: every value, only `Ok`, only `Some` (or `None` too).

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{Codec, CodecError, Limits};
use crate::envelope::{self, Invalid, Meta};
use crate::spec::SiteSpec;

#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached: a cached value must implement `serde::Serialize` and `serde::de::DeserializeOwned`",
    label = "the value stored in Redis",
    note = "derive `serde::Serialize` and `serde::Deserialize` for it; borrowed types such as `&str` cannot be decoded from Redis, return an owned type such as `String`"
)]
#[doc(hidden)]
pub trait CacheValue: Serialize + DeserializeOwned {}
#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned> CacheValue for T {}

#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be kept in the local tier: with `local = N` a cached value must implement `Clone` (and be `Send + Sync + 'static`)",
    label = "the local tier hands out clones of this value",
    note = "derive `Clone` for it, or remove `local = ...` to read every hit from Redis"
)]
#[doc(hidden)]
pub trait LocalValue: Clone + Send + Sync + 'static {}
#[diagnostic::do_not_recommend]
impl<T: Clone + Send + Sync + 'static> LocalValue for T {}

/// How a cached function's values become envelopes and back: made once per call by
/// [`value_codec`], where the value type is checked (one error, on the function's return type),
/// so the flow itself puts no bound on it.
#[doc(hidden)]
pub struct ValueCodec<T> {
    /// The format: the cache's, or the function's own (set as a call meets its cache).
    codec: Codec,
    seal: SealFn<T>,
    open: OpenFn<T>,
}

/// Encodes a value behind a header (compressing above the given length).
type SealFn<T> = fn(Codec, &T, Meta, usize) -> Result<Vec<u8>, CodecError>;

/// Reads an envelope: its header and the value.
type OpenFn<T> = fn(Codec, &[u8], Limits) -> Result<(Meta, T), Invalid>;

impl<T> Clone for ValueCodec<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for ValueCodec<T> {}

impl<T> std::fmt::Debug for ValueCodec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ValueCodec").field(&self.codec).finish()
    }
}

impl<T: CacheValue> ValueCodec<T> {
    pub(crate) fn new() -> Self {
        ValueCodec {
            codec: Codec::DEFAULT,
            seal: envelope::seal::<T>,
            open: envelope::open::<T>,
        }
    }
}

impl<T> ValueCodec<T> {
    /// The same, in `codec`.
    pub(crate) fn with(self, codec: Codec) -> Self {
        ValueCodec { codec, ..self }
    }

    /// The format values are sealed in.
    pub(crate) fn codec(&self) -> Codec {
        self.codec
    }

    /// The envelope of `value`, if it can be read back within `limits`: a value nested deeper,
    /// or decoding to more, than a read allows would be stored and then found invalid by every
    /// read (a miss and a store each time), so it is not stored at all.
    pub(crate) fn seal(
        &self,
        value: &T,
        meta: Meta,
        compress_above: usize,
        limits: Limits,
    ) -> Result<Vec<u8>, CodecError> {
        let bytes = (self.seal)(self.codec, value, meta, compress_above)?;
        if bytes.len() > limits.stored {
            // Too large to store at all: the store counts it as oversize.
            return Ok(bytes);
        }
        match (self.open)(self.codec, &bytes, limits) {
            Ok(_) => Ok(bytes),
            Err(invalid) => Err(unreadable(invalid)),
        }
    }

    /// Reads an envelope, within what a decode may take (`Limits`: bytes read from Redis are
    /// untrusted).
    pub(crate) fn open(&self, bytes: &[u8], limits: Limits) -> Result<(Meta, T), Invalid> {
        (self.open)(self.codec, bytes, limits)
    }
}

/// Why a sealed value is not stored: reading it back exceeds what a read may take (this value
/// only), or fails for its type (every value of the function: its `Serialize` and `Deserialize`
/// disagree).
pub(crate) fn unreadable(invalid: Invalid) -> CodecError {
    match invalid {
        Invalid::Payload(CodecError::Format(err)) => CodecError::DoesNotReadBack(err),
        invalid => CodecError::OverLimits(format!(
            "it would not read back within the decoder's limits ({} levels of nesting, {}x \
             max_value_bytes decoded); raise max_value_bytes or keep the value flatter \
             ({invalid})",
            crate::codec::limits::MAX_DEPTH,
            crate::codec::limits::BUDGET_FACTOR,
        )),
    }
}

/// The codec of a function's stored values; the generated code calls it spanned on the return
/// type, so a type that cannot be cached is reported there, once.
#[doc(hidden)]
pub fn value_codec<T: CacheValue>() -> ValueCodec<T> {
    ValueCodec::new()
}

/// Decides, per return value, what goes to Redis and for how long.
///
/// The impls put no bound on the stored type: [`value_codec`] requires `Stored: CacheValue`, so a
/// type that cannot be stored is reported as such, once, with [`CacheValue`]'s message.
#[doc(hidden)]
pub trait Policy<R> {
    type Stored;
    /// What the attribute's closures (`ttl = |v| ...`, `unless = |v| ...`) see: the `Ok` or
    /// `Some` value.
    type Value;
    /// The value the closures judge, if `value` has one (not an `Err` or a `None`).
    fn value(value: &R) -> Option<&Self::Value>;
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
    type Value = T;
    fn value(value: &T) -> Option<&T> {
        Some(value)
    }
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
    type Value = T;
    fn value(value: &Result<T, E>) -> Option<&T> {
        value.as_ref().ok()
    }
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
    type Value = T;
    fn value(value: &Option<T>) -> Option<&T> {
        value.as_ref()
    }
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
    type Value = T;
    fn value(value: &Option<T>) -> Option<&T> {
        value.as_ref()
    }
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
    /// A `None` that could not be stored (its `none_ttl` came out under a second) is still
    /// handed to the followers, as without `none_ttl`.
    fn is_absent(value: &Option<T>) -> bool {
        value.is_none()
    }
    fn absent() -> Option<Option<T>> {
        Some(None)
    }
}

/// The attribute's per-call rules for storing: `ttl = EXPR` and `none_ttl = EXPR` (evaluated on each call),
/// `ttl = |v: &T| ...` (from the value) and `unless = |v: &T| ...` (not stored when true). `T`
/// is the stored value: the `Ok` value of a `Result`, the `Some` value of an `Option`.
///
/// A closure is borrowed for the call, or (with `refresh = "background"`, whose refresh outlives
/// the call) a plain `fn`: a closure that captures nothing.
#[doc(hidden)]
pub struct Rules<'a, T> {
    ttl: Option<TtlRule<'a, T>>,
    none_ttl: Option<Duration>,
    /// `tags = |v: &T| ...`.
    tags_of: Option<Rule<'a, T, Vec<String>>>,
    unless: Option<Rule<'a, T, bool>>,
    /// `soft_timeout`: how many milliseconds a call waits for a refresh while it has a value to
    /// serve; 0: until the refresh ends. (Milliseconds in a `u32`, up to 49 days: the rules
    /// travel in every call's future, where a `Duration` would take twice the room.)
    soft_timeout_ms: u32,
}

enum TtlRule<'a, T> {
    Fixed(Duration),
    Of(Rule<'a, T, Duration>),
}

/// A closure over the value to be stored.
enum Rule<'a, T, O> {
    Borrowed(&'a (dyn Fn(&T) -> O + Sync)),
    Static(fn(&T) -> O),
}

impl<T, O> Rule<'_, T, O> {
    fn apply(&self, value: &T) -> O {
        match self {
            Rule::Borrowed(rule) => rule(value),
            Rule::Static(rule) => rule(value),
        }
    }

    fn detached(&self) -> Option<Rule<'static, T, O>> {
        match self {
            Rule::Borrowed(_) => None,
            Rule::Static(rule) => Some(Rule::Static(*rule)),
        }
    }
}

impl<T> std::fmt::Debug for Rules<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("ttl", &self.ttl.is_some())
            .field("unless", &self.unless.is_some())
            .finish()
    }
}

impl<'a, T> Rules<'a, T> {
    /// No rule: the attribute's literal TTL, every value stored.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Rules {
            ttl: None,
            none_ttl: None,
            tags_of: None,
            unless: None,
            soft_timeout_ms: 0,
        }
    }

    /// `soft_timeout = ...`: a call refreshing an entry it could serve waits this long at most.
    pub fn soft_timeout(mut self, bound: Duration) -> Self {
        // At least a millisecond: zero would mean "no bound".
        self.soft_timeout_ms = u32::try_from(bound.as_millis()).unwrap_or(u32::MAX).max(1);
        self
    }

    /// How long this call waits for a refresh while it has a value to serve (`None`: until the
    /// refresh ends).
    pub(crate) fn soft_timeout_bound(&self) -> Option<Duration> {
        (self.soft_timeout_ms > 0).then(|| Duration::from_millis(self.soft_timeout_ms.into()))
    }

    /// `ttl = EXPR`: seconds (`u64`) or a `Duration`, evaluated for this call.
    pub fn ttl(mut self, ttl: impl IntoTtl) -> Self {
        self.ttl = Some(TtlRule::Fixed(ttl.into_ttl()));
        self
    }

    /// `none_ttl = EXPR`: how long a `None` is kept, evaluated for this call.
    pub fn none_ttl(mut self, ttl: impl IntoTtl) -> Self {
        self.none_ttl = Some(ttl.into_ttl());
        self
    }

    /// `tags = |v: &T| ...`: the tags from the value to be stored.
    pub fn tags_of(mut self, tags: &'a (dyn Fn(&T) -> Vec<String> + Sync)) -> Self {
        self.tags_of = Some(Rule::Borrowed(tags));
        self
    }

    /// [`Rules::tags_of`] for a closure that captures nothing.
    pub fn tags_of_fn(mut self, tags: fn(&T) -> Vec<String>) -> Self {
        self.tags_of = Some(Rule::Static(tags));
        self
    }

    /// The tags of `value`: `listed` (rendered from the arguments) and the closure's (`None`: a
    /// `None` kept by `none_ttl`, which only the listed tags cover).
    pub(crate) fn tags_for(&self, listed: &[String], value: Option<&T>) -> Vec<String> {
        let mut tags = listed.to_vec();
        if let (Some(rule), Some(value)) = (&self.tags_of, value) {
            tags.extend(rule.apply(value));
        }
        tags.retain(|tag| !tag.is_empty());
        tags.sort_unstable();
        tags.dedup();
        tags
    }

    /// This call's TTL for a `None`, when `none_ttl` is an expression.
    pub(crate) fn none_ttl_for(&self) -> Option<Duration> {
        self.none_ttl
    }

    /// `ttl = |v: &T| ...`: the TTL from the value to be stored.
    pub fn ttl_of(mut self, ttl: &'a (dyn Fn(&T) -> Duration + Sync)) -> Self {
        self.ttl = Some(TtlRule::Of(Rule::Borrowed(ttl)));
        self
    }

    /// [`Rules::ttl_of`] for a closure that captures nothing, which a background refresh can
    /// take along.
    pub fn ttl_of_fn(mut self, ttl: fn(&T) -> Duration) -> Self {
        self.ttl = Some(TtlRule::Of(Rule::Static(ttl)));
        self
    }

    /// `unless = |v: &T| ...`: `true` returns the value without storing it.
    pub fn unless(mut self, unless: &'a (dyn Fn(&T) -> bool + Sync)) -> Self {
        self.unless = Some(Rule::Borrowed(unless));
        self
    }

    /// [`Rules::unless`] for a closure that captures nothing.
    pub fn unless_fn(mut self, unless: fn(&T) -> bool) -> Self {
        self.unless = Some(Rule::Static(unless));
        self
    }

    /// This call's TTL for `value`, when a rule sets one (else the attribute's).
    pub(crate) fn ttl_for(&self, value: &T) -> Option<Duration> {
        match self.ttl.as_ref()? {
            TtlRule::Fixed(ttl) => Some(*ttl),
            TtlRule::Of(ttl) => Some(ttl.apply(value)),
        }
    }

    /// Whether `value` may be stored (`unless` did not say no).
    pub(crate) fn keeps(&self, value: &T) -> bool {
        self.unless
            .as_ref()
            .is_none_or(|unless| !unless.apply(value))
    }

    /// The same rules, free of the call, if none borrows from it.
    pub(crate) fn detached(&self) -> Option<Rules<'static, T>> {
        let ttl = match &self.ttl {
            None => None,
            Some(TtlRule::Fixed(ttl)) => Some(TtlRule::Fixed(*ttl)),
            Some(TtlRule::Of(rule)) => Some(TtlRule::Of(rule.detached()?)),
        };
        let unless = match &self.unless {
            None => None,
            Some(rule) => Some(rule.detached()?),
        };
        let tags_of = match &self.tags_of {
            None => None,
            Some(rule) => Some(rule.detached()?),
        };
        Some(Rules {
            ttl,
            none_ttl: self.none_ttl,
            tags_of,
            unless,
            soft_timeout_ms: self.soft_timeout_ms,
        })
    }
}

/// Collects what a `tags = |v| ...` closure returns: any iterator of displayable items.
pub fn collect_tags<I>(tags: I) -> Vec<String>
where
    I: IntoIterator,
    I::Item: std::fmt::Display,
{
    tags.into_iter().map(|tag| tag.to_string()).collect()
}

/// What `ttl = EXPR` may evaluate to: seconds as a `u64`, or a `Duration`.
#[diagnostic::on_unimplemented(
    message = "`ttl = ...` must evaluate to seconds (`u64`) or a `std::time::Duration`, not `{Self}`",
    label = "the TTL of this call",
    note = "for a TTL taken from the value, write a closure: `ttl = |v: &T| Duration::from_secs(...)`"
)]
#[doc(hidden)]
pub trait IntoTtl {
    fn into_ttl(self) -> Duration;
}

impl IntoTtl for u64 {
    fn into_ttl(self) -> Duration {
        Duration::from_secs(self)
    }
}

impl IntoTtl for Duration {
    fn into_ttl(self) -> Duration {
        self
    }
}
