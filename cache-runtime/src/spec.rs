//! The annotated function's options, as the macro wrote them: a `static` per function, read by
//! key derivation, freshness, the storing policy and the flow.

/// The annotated function's options, as the macro wrote them.
#[doc(hidden)]
#[derive(Debug)]
pub struct SiteSpec {
    pub module: &'static str,
    pub function: &'static str,
    pub name: Option<&'static str>,
    pub ttl_secs: u64,
    /// 0: `None` is not cached.
    pub none_ttl_secs: u64,
    pub version: u32,
    /// The return type as written, whitespace removed.
    pub value_type: &'static str,
    /// Seconds an entry is kept (and may be served stale) after its TTL; 0: none.
    pub stale_secs: u64,
    /// Probabilistic early refresh (XFetch) on hits.
    pub early_refresh: bool,
    /// Fraction of the TTL by which expiries are randomly shortened; `None`:
    /// [`DEFAULT_TTL_JITTER`](crate::DEFAULT_TTL_JITTER).
    pub jitter: Option<f32>,
    /// On a miss, wait for another process holding the key's lock (`lock = true`, the default),
    /// or compute at once and take the lock alongside (`lock = false`).
    pub wait_for_lock: bool,
    /// `local = N`: entries kept decoded in this process; 0: no local tier.
    pub local_entries: u64,
    /// `local_ttl = S`: seconds a local copy may be served without Redis's confirmation; 0:
    /// [`DEFAULT_LOCAL_TTL`](crate::DEFAULT_LOCAL_TTL).
    pub local_ttl_secs: u64,
    /// The `tags(...)` templates and the `tags = |v| ...` closure as written (`""`: none). Part of
    /// the fingerprint: entries written before a function had tags are not in its tags' sets, so
    /// adding or changing tags moves the function to new keys. A placeholder naming a key
    /// parameter is written by its position among them (`{@0}`), so a batch function and a
    /// single-item one with the same tags write the same text.
    pub tags: &'static str,
    /// `None` is stored too (`none_ttl`): the stored type is then `Option<T>` rather than `T`,
    /// so it is part of the fingerprint.
    pub stores_none: bool,
    /// A batch function (`batch = ...`): `value_type` is then what one item is stored as, and
    /// the function is listed in stats as `{name} (batch)`.
    pub batch: bool,
    /// `codec = "..."`: this function's codec, whatever its cache's; `None`: the cache's.
    pub codec: Option<crate::Codec>,
}
