//! What a batch function looks like to the runtime: the collection of keys it takes, the map it
//! returns (optionally in a `Result`), and how one item's value is stored.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::convert::Infallible;
use std::hash::{BuildHasher, Hash};

use crate::codec::{Codec, CodecError, Limits};
use crate::envelope::{self, Invalid, Meta};
use crate::key::CallKey;
use crate::policy::CacheValue;

/// Each key of the batch parameter (in order, duplicates included) with its call's key: what
/// the generated code hands to the flow. `key_of` derives one item's key from the other key
/// arguments and that element.
#[doc(hidden)]
pub fn batch_keys<'c, C, K>(keys: &'c C, mut key_of: impl FnMut(&K) -> CallKey) -> Vec<(K, CallKey)>
where
    C: ?Sized,
    &'c C: IntoIterator<Item = &'c K>,
    K: BatchKey + 'c,
{
    keys.into_iter()
        .map(|key| (key.clone(), key_of(key)))
        .collect()
}

/// What an element of the batch parameter must be: the flow hands the missing ones to the
/// function in a collection of its own, and keys the answer by them.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a batch key: with `batch = ...` the elements must be `Clone`",
    label = "an element of the batch parameter",
    note = "the function is called again with the keys that were not cached, so each key is cloned once; ids, strings and uuids are `Clone`"
)]
#[doc(hidden)]
pub trait BatchKey: Clone {}
#[diagnostic::do_not_recommend]
impl<K: Clone> BatchKey for K {}

/// The batch parameter, rebuilt from the keys the function is called with.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot hold the keys of a batch call: `batch = ...` names a `Vec<K>`, `&[K]`, `HashSet<K>` or `BTreeSet<K>`",
    label = "the function is called with the missing keys in one of these",
    note = "take the keys as `Vec<K>`, `&[K]`, `HashSet<K>` or `BTreeSet<K>` (or a reference to one)"
)]
#[doc(hidden)]
pub trait FromBatchKeys<K>: Sized {
    fn from_batch_keys(keys: Vec<K>) -> Self;
}

impl<K> FromBatchKeys<K> for Vec<K> {
    fn from_batch_keys(keys: Vec<K>) -> Self {
        keys
    }
}

impl<K: Hash + Eq, S: BuildHasher + Default> FromBatchKeys<K> for HashSet<K, S> {
    fn from_batch_keys(keys: Vec<K>) -> Self {
        keys.into_iter().collect()
    }
}

impl<K: Ord> FromBatchKeys<K> for BTreeSet<K> {
    fn from_batch_keys(keys: Vec<K>) -> Self {
        keys.into_iter().collect()
    }
}

/// Rebuilds the batch parameter from `keys` (the generated code binds it under the parameter's
/// own name, so the body reads it as written).
#[doc(hidden)]
pub fn batch_param<C: FromBatchKeys<K>, K>(keys: Vec<K>) -> C {
    C::from_batch_keys(keys)
}

/// The map a batch function returns: each key it found, with its value.
#[doc(hidden)]
pub trait BatchMap: Default {
    type Key;
    type Value;
    /// Makes room for `more` values.
    fn reserve(&mut self, more: usize);
    /// Adds a value (a hit, or a value computed by the function).
    fn put(&mut self, key: Self::Key, value: Self::Value);
    /// The value of `key`, if the map has one.
    fn get(&self, key: &Self::Key) -> Option<&Self::Value>;
    /// How many keys it holds.
    fn len(&self) -> usize;
}

impl<K: Hash + Eq, V, S: BuildHasher + Default> BatchMap for HashMap<K, V, S> {
    type Key = K;
    type Value = V;
    fn reserve(&mut self, more: usize) {
        HashMap::reserve(self, more);
    }
    fn put(&mut self, key: K, value: V) {
        self.insert(key, value);
    }
    fn get(&self, key: &K) -> Option<&V> {
        HashMap::get(self, key)
    }
    fn len(&self) -> usize {
        HashMap::len(self)
    }
}

impl<K: Ord, V> BatchMap for BTreeMap<K, V> {
    type Key = K;
    type Value = V;
    fn reserve(&mut self, _more: usize) {}
    fn put(&mut self, key: K, value: V) {
        self.insert(key, value);
    }
    fn get(&self, key: &K) -> Option<&V> {
        BTreeMap::get(self, key)
    }
    fn len(&self) -> usize {
        BTreeMap::len(self)
    }
}

/// What a batch function returns: a [`BatchMap`], or a `Result` of one (an `Err` is returned as
/// it is and stores nothing).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not what a batch function returns: with `batch = ...` it returns `HashMap<K, V>` or `BTreeMap<K, V>` (K the element type of the batch parameter), optionally in `Result<_, E>`",
    label = "each key found, with its value",
    note = "a key absent from the map means \"not found\"; the keys must be the batch parameter's elements, e.g. `ids: Vec<u64>` -> `HashMap<u64, Product>`"
)]
#[doc(hidden)]
pub trait BatchReturn: Sized {
    type Map: BatchMap;
    type Error;
    fn into_map(self) -> Result<Self::Map, Self::Error>;
    fn from_map(map: Self::Map) -> Self;
    fn from_error(error: Self::Error) -> Self;
}

impl<K: Hash + Eq, V, S: BuildHasher + Default> BatchReturn for HashMap<K, V, S> {
    type Map = Self;
    type Error = Infallible;
    fn into_map(self) -> Result<Self, Infallible> {
        Ok(self)
    }
    fn from_map(map: Self) -> Self {
        map
    }
    fn from_error(error: Infallible) -> Self {
        match error {}
    }
}

impl<K: Ord, V> BatchReturn for BTreeMap<K, V> {
    type Map = Self;
    type Error = Infallible;
    fn into_map(self) -> Result<Self, Infallible> {
        Ok(self)
    }
    fn from_map(map: Self) -> Self {
        map
    }
    fn from_error(error: Infallible) -> Self {
        match error {}
    }
}

impl<M: BatchReturn<Map = M, Error = Infallible> + BatchMap, E> BatchReturn for Result<M, E> {
    type Map = M;
    type Error = E;
    fn into_map(self) -> Result<M, E> {
        self
    }
    fn from_map(map: M) -> Self {
        Ok(map)
    }
    fn from_error(error: E) -> Self {
        Err(error)
    }
}

/// A batch function's return type, keyed by `K`, the elements of its batch parameter.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not keyed by the batch's elements: with `batch = ...` the function returns a map from each of its keys (`{K}`) to its value",
    label = "must be `HashMap<{K}, V>` or `BTreeMap<{K}, V>`, optionally in `Result<_, E>`",
    note = "a key absent from the map means \"not found\"; return the keys as the batch parameter holds them"
)]
#[doc(hidden)]
pub trait KeyedBy<K>: BatchReturn<Map: BatchMap<Key = K>> {}
impl<K: Hash + Eq, V, S: BuildHasher + Default> KeyedBy<K> for HashMap<K, V, S> {}
impl<K: Ord, V> KeyedBy<K> for BTreeMap<K, V> {}
impl<M, E, K> KeyedBy<K> for Result<M, E> where
    M: KeyedBy<K> + BatchReturn<Map = M, Error = Infallible> + BatchMap<Key = K>
{
}

/// Seals an item's value (`None`: the "not found" marker) under a header.
type SealItem<V> = fn(Codec, Option<&V>, Meta, usize) -> Result<Vec<u8>, CodecError>;
/// Opens an item's envelope.
type OpenItem<V> = fn(Codec, &[u8], Limits) -> Result<(Meta, Option<V>), Invalid>;

/// How one item of a batch is stored: its value, and (with `none_ttl`) a "not found" marker for
/// a key the function did not return. Stored as a single-item function returning `Option<V>`
/// stores it, so the two can share entries.
#[doc(hidden)]
pub struct ItemCodec<V> {
    /// The format: the cache's, or the function's own (set as a call meets its cache).
    codec: Codec,
    seal: SealItem<V>,
    open: OpenItem<V>,
    /// With `none_ttl`: a key the function did not return is stored as "not found".
    pub(crate) stores_absent: bool,
}

impl<V> Clone for ItemCodec<V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for ItemCodec<V> {}

impl<V> std::fmt::Debug for ItemCodec<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemCodec")
            .field("codec", &self.codec)
            .field("stores_absent", &self.stores_absent)
            .finish()
    }
}

/// The items of a batch function without `none_ttl`: found values are stored, as `V`.
#[doc(hidden)]
pub fn item_codec<V: CacheValue>() -> ItemCodec<V> {
    ItemCodec {
        codec: Codec::DEFAULT,
        seal: |codec, value, meta, compress_above| match value {
            Some(value) => envelope::seal::<V>(codec, value, meta, compress_above),
            None => Err(CodecError::Format("an absent key is not stored".into())),
        },
        open: |codec, bytes, limits| {
            envelope::open::<V>(codec, bytes, limits).map(|(meta, v)| (meta, Some(v)))
        },
        stores_absent: false,
    }
}

/// The items of a batch function with `none_ttl`: stored as `Option<V>`, `None` for a key the
/// function did not return.
#[doc(hidden)]
pub fn item_codec_with_absent<V: CacheValue>() -> ItemCodec<V> {
    ItemCodec {
        codec: Codec::DEFAULT,
        seal: |codec, value, meta, compress_above| {
            envelope::seal::<Option<&V>>(codec, &value, meta, compress_above)
        },
        open: envelope::open::<Option<V>>,
        stores_absent: true,
    }
}

impl<V> ItemCodec<V> {
    /// The same, in `codec`.
    pub(crate) fn with(self, codec: Codec) -> Self {
        ItemCodec { codec, ..self }
    }

    /// The format items are sealed in.
    pub(crate) fn codec(&self) -> Codec {
        self.codec
    }

    /// The envelope of a found value, or (`None`) of the "not found" marker, if it can be read
    /// back within `limits` (see `ValueCodec::seal`).
    pub(crate) fn seal(
        &self,
        value: Option<&V>,
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
            Err(invalid) => Err(crate::policy::unreadable(invalid)),
        }
    }

    /// An entry's header and value (`None`: the "not found" marker), within `limits`.
    pub(crate) fn open(&self, bytes: &[u8], limits: Limits) -> Result<(Meta, Option<V>), Invalid> {
        (self.open)(self.codec, bytes, limits)
    }
}
