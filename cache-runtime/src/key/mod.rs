//! Key derivation: `{prefix}:{function}:{fingerprint}:{{args}}`.
//!
//! - `function` is `module_path::fn_name` (`module_path::Type::method` for methods), or the
//!   attribute's `name = "..."`;
//! - `fingerprint` is 8 hex digits of xxh3-64 over what makes stored bytes unreadable: the return
//!   type as written, the attribute's `version`, and the codec id;
//! - `args` is 32 hex digits of xxh3-128 over the [`canonical`] encoding of the key arguments
//!   in order (bincode 2's layout, whatever codecs the build has), preceded by the names of the function's type parameters (and `Self`'s
//!   for methods), so `parse::<u32>("1")` and `parse::<u64>("1")` do not share an entry. It is
//!   wrapped in braces, a Redis Cluster hash tag: an entry and its lock (`…:#{args}:lock`) always
//!   live in the same slot, so one script can touch both on a cluster too.
//!
//! Serialization is length-prefixed, so `f("a b")` and `f("a", "b")` cannot meet. Every segment is
//! made of identifier characters, `:`, hex digits, or characters checked when the name or prefix
//! was accepted, so no argument value can put a glob character into a key.

use std::hash::Hasher;

use serde::Serialize;
use xxhash_rust::xxh3::{Xxh3, xxh3_128};

use crate::codec::Codec;
use crate::spec::SiteSpec;

mod canonical;

/// Hashes a call's arguments; built by the generated code, one `arg` call per key parameter.
///
/// Arguments are serialized into an inline buffer and hashed in one shot, which for the usual few
/// bytes is several times cheaper than xxh3's streaming state; longer input spills into the
/// streaming hasher. Both give the same hash of the same bytes.
#[doc(hidden)]
pub struct KeyBuilder {
    buf: [u8; INLINE],
    len: usize,
    spilled: Option<Box<Xxh3>>,
    self_type: Option<&'static str>,
    failed: bool,
}

/// Bytes of serialized arguments hashed without the streaming hasher.
const INLINE: usize = 128;

/// The part of a key that depends on the call: its argument hash, and `Self` for methods.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct CallKey {
    args: Option<u128>,
    self_type: Option<&'static str>,
    /// The attribute's `condition` was false: no key, no cache.
    bypassed: bool,
}

#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of the cache key: it does not implement `serde::Serialize`",
    label = "`include_self` hashes `self` into the cache key",
    note = "derive `serde::Serialize` for it, or remove `include_self` (the key is then the other arguments), or key on some of its fields with `key = (self.tenant, id)`"
)]
#[doc(hidden)]
pub trait KeyArg: Serialize {}
#[diagnostic::do_not_recommend]
impl<T: Serialize + ?Sized> KeyArg for T {}

/// A key argument as the companions add it: serialized if its type is `Serialize`, and otherwise
/// (only in code that does not compile, since the function itself requires it) marking the key
/// unkeyable. Chosen by method resolution: `(&&KeyPart(&v)).add_to(&mut key)` finds
/// [`AddSerialized`] (implemented for `&KeyPart<T>`, so taking `&&KeyPart<T>`) when
/// `T: Serialize`, and otherwise, one dereference later, [`AddUnkeyable`] (for `KeyPart<T>`).
#[doc(hidden)]
#[derive(Debug)]
pub struct KeyPart<'a, T: ?Sized>(pub &'a T);

#[doc(hidden)]
pub trait AddSerialized {
    fn add_to(&self, key: &mut KeyBuilder);
}

impl<T: Serialize + ?Sized> AddSerialized for &KeyPart<'_, T> {
    fn add_to(&self, key: &mut KeyBuilder) {
        key.arg(self.0);
    }
}

#[doc(hidden)]
pub trait AddUnkeyable {
    fn add_to(&self, key: &mut KeyBuilder);
}

impl<T: ?Sized> AddUnkeyable for KeyPart<'_, T> {
    fn add_to(&self, key: &mut KeyBuilder) {
        key.failed = true;
    }
}

impl KeyBuilder {
    #[allow(clippy::new_without_default)]
    #[inline]
    pub fn new() -> Self {
        KeyBuilder {
            buf: [0; INLINE],
            len: 0,
            spilled: None,
            self_type: None,
            failed: false,
        }
    }

    #[inline]
    fn update(&mut self, bytes: &[u8]) {
        if let Some(hasher) = &mut self.spilled {
            hasher.update(bytes);
        } else if let Some(room) = self.buf.get_mut(self.len..self.len + bytes.len()) {
            room.copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            let mut hasher = Box::new(Xxh3::new());
            hasher.update(&self.buf[..self.len]);
            hasher.update(bytes);
            self.spilled = Some(hasher);
        }
    }

    /// For methods: `type_name::<Self>()`, which names the function and separates `Repo<A>` from
    /// `Repo<B>`.
    pub fn method_of(&mut self, self_type: &'static str) {
        self.self_type = Some(self_type);
        self.type_param(self_type);
    }

    pub fn type_param(&mut self, type_name: &'static str) {
        self.update(&(type_name.len() as u64).to_le_bytes());
        self.update(type_name.as_bytes());
    }

    pub fn arg<T: KeyArg + ?Sized>(&mut self, value: &T) {
        if !self.failed {
            self.failed = canonical::encode(value, self).is_err();
        }
    }

    /// `None` inside when an argument could not be serialized: the call then bypasses the cache.
    #[inline]
    pub fn finish(self) -> CallKey {
        let digest = || match &self.spilled {
            Some(hasher) => hasher.digest128(),
            None => xxh3_128(&self.buf[..self.len]),
        };
        CallKey {
            args: (!self.failed).then(digest),
            self_type: self.self_type,
            bypassed: false,
        }
    }
}

impl std::fmt::Debug for KeyBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyBuilder").finish_non_exhaustive()
    }
}

impl canonical::Sink for KeyBuilder {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

impl CallKey {
    /// The key of a call whose `condition` was false: it runs the function without the cache.
    /// `self_type` names a method's type, as for any call (stats name the function by it).
    pub fn bypassed(self_type: Option<&'static str>) -> CallKey {
        CallKey {
            args: None,
            self_type,
            bypassed: true,
        }
    }

    pub(crate) fn is_bypassed(&self) -> bool {
        self.bypassed
    }

    pub(crate) fn self_type(&self) -> Option<&'static str> {
        self.self_type
    }

    /// The full Redis key, or `None` when the arguments could not be hashed.
    pub(crate) fn render(&self, prefix: &str, spec: &SiteSpec, fingerprint: u32) -> Option<String> {
        let args = self.args?;
        let mut key = String::with_capacity(prefix.len() + 96);
        key.push_str(prefix);
        key.push(':');
        push_function(&mut key, spec, self.self_type);
        key.push(':');
        push_hex(&mut key, fingerprint.into(), 8);
        key.push_str(":{");
        push_hex(&mut key, args, 32);
        key.push('}');
        Some(key)
    }

    /// Everything of the key but the argument hash, `{prefix}:{function}:{fingerprint}:{`: the
    /// same for every call of one function (and `Self`), so a batch renders it once.
    pub(crate) fn stem(&self, prefix: &str, spec: &SiteSpec, fingerprint: u32) -> String {
        let mut stem = String::with_capacity(prefix.len() + 64);
        stem.push_str(prefix);
        stem.push(':');
        push_function(&mut stem, spec, self.self_type);
        stem.push(':');
        push_hex(&mut stem, fingerprint.into(), 8);
        stem.push_str(":{");
        stem
    }

    /// The full key under `stem` ([`CallKey::stem`] of a call of the same function), or `None`
    /// when the arguments could not be hashed.
    pub(crate) fn render_on(&self, stem: &str) -> Option<String> {
        let args = self.args?;
        let mut key = String::with_capacity(stem.len() + 33);
        key.push_str(stem);
        push_hex(&mut key, args, 32);
        key.push('}');
        Some(key)
    }

    /// The hash of the call's arguments; `None` when they could not be serialized.
    pub(crate) fn args(&self) -> Option<u128> {
        self.args
    }
}

impl SiteSpec {
    /// What makes this function's stored bytes unreadable to another build, when its values are
    /// stored with `codec`: see [`fingerprint`].
    pub(crate) fn fingerprint(&self, codec: Codec) -> u32 {
        fingerprint(
            self.value_type,
            self.version,
            codec.id(),
            self.tags,
            self.stores_none,
        )
    }

    /// Identifies the function's key space within one process: its key segment's ingredients
    /// and fingerprint (but the codec). Cheaper than the rendered function segment, and no less
    /// precise; the invalidation companion computes it from the same spec, so it finds the calls
    /// in flight of the function it invalidates. Functions that share a `name` and a fingerprint
    /// share their keys, and so their flights: a batch function and its single-item counterpart
    /// coalesce. The codec is left out: flights and local copies belong to one cache, whose
    /// calls of a function all use one codec, and they hold values, not bytes (two functions
    /// sharing a `name` in different codecs share flights: a follower that gets bytes of another
    /// codec cannot open them, and runs the function itself).
    pub(crate) fn namespace(&self) -> u64 {
        let mut h = Xxh3::new();
        let parts = match self.name {
            Some(name) => ["", "", name],
            None => [self.module, self.function, ""],
        };
        for part in parts {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let without_codec = fingerprint(
            self.value_type,
            self.version,
            0,
            self.tags,
            self.stores_none,
        );
        h.update(&without_codec.to_le_bytes());
        h.digest()
    }
}

/// The hasher of maps keyed by hashes this module computed (flight ids, argument hashes): they
/// are uniform already, so hashing them again would only cost time.
pub(crate) type PreHashed = std::hash::BuildHasherDefault<IdHasher>;

/// Flight ids are already xxh3 hashes: folding their bits is as good as hashing them again
/// (the table holds only calls in flight, so a crafted collision cannot grow it).
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).rotate_left(23);
    }

    fn write_u128(&mut self, n: u128) {
        self.write_u64(n as u64 ^ (n >> 64) as u64);
    }
}

/// The characters a configured segment of a key may have (prefix, `name = "..."`, and the
/// names and prefixes given to clears): no glob, space or brace, so no pattern built from them
/// can reach outside its place.
pub(crate) fn is_segment_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/')
}

/// The key segment naming the function: what a pattern selects to address all of its entries.
pub(crate) fn push_function(out: &mut String, spec: &SiteSpec, self_type: Option<&'static str>) {
    if let Some(name) = spec.name {
        out.push_str(name);
        return;
    }
    out.push_str(spec.module);
    out.push_str("::");
    if let Some(ty) = self_type {
        out.push_str(&type_segment(ty));
        out.push_str("::");
    }
    out.push_str(spec.function);
}

/// `my_crate::repo::Repo<alloc::string::String>` becomes `Repo`: the type's own name, without
/// its path or generic arguments (those are hashed into the arguments instead).
fn type_segment(type_name: &str) -> String {
    let base = type_name.split('<').next().unwrap_or(type_name);
    let last = base.rsplit("::").next().unwrap_or(base);
    let clean: String = last
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if clean.is_empty() {
        "Self".into()
    } else {
        clean
    }
}

/// What makes stored bytes unreadable: the return type as written, `version`, the codec's id,
/// (for a tagged function) its tags as written, and whether `None` is stored too.
pub(crate) fn fingerprint(
    value_type: &str,
    version: u32,
    codec_id: u8,
    tags: &str,
    stores_none: bool,
) -> u32 {
    let mut hasher = Xxh3::new();
    hasher.update(value_type.as_bytes());
    hasher.update(&[0]);
    hasher.update(&version.to_le_bytes());
    hasher.update(&[codec_id]);
    // Only when there are tags, so the keys of functions without them did not change.
    if !tags.is_empty() {
        hasher.update(b"tags\0");
        hasher.update(tags.as_bytes());
    }
    // Only with `none_ttl`, likewise: the stored type is `Option<T>` then, not `T`.
    if stores_none {
        hasher.update(b"\0none");
    }
    (hasher.digest() >> 32) as u32
}

/// Appends the low `digits` (at most 32) hex digits of `value`, zero-padded.
fn push_hex(out: &mut String, value: u128, digits: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 32];
    for (i, digit) in buf[..digits].iter_mut().rev().enumerate() {
        *digit = HEX[((value >> (i * 4)) & 0xF) as usize];
    }
    // One append of ASCII digits, instead of a UTF-8 encoding per character.
    out.push_str(std::str::from_utf8(&buf[..digits]).expect("hex digits are ASCII"));
}

#[cfg(test)]
#[allow(clippy::needless_borrow)]
mod key_part_tests {
    use super::*;

    struct Opaque;

    #[test]
    fn key_parts_serialize_when_they_can_and_mark_the_key_unkeyable_otherwise() {
        let mut direct = KeyBuilder::new();
        direct.arg(&7u64);
        let mut via_part = KeyBuilder::new();
        (&&KeyPart(&7u64)).add_to(&mut via_part);
        assert_eq!(direct.finish().args(), via_part.finish().args());
        assert!(via_part_of(&Opaque).args().is_none());
    }

    fn via_part_of(value: &Opaque) -> CallKey {
        let mut key = KeyBuilder::new();
        (&&KeyPart(value)).add_to(&mut key);
        key.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_segment_strips_path_and_generics() {
        assert_eq!(
            type_segment("app::repo::Repo<alloc::string::String>"),
            "Repo"
        );
        assert_eq!(type_segment("app::Plain"), "Plain");
        assert_eq!(type_segment("[u8]"), "u8");
        assert_eq!(type_segment("()"), "Self");
    }

    #[test]
    fn a_key_rendered_on_its_stem_is_the_key() {
        let spec = SiteSpec {
            module: "m",
            function: "f",
            name: None,
            ttl_secs: 1,
            none_ttl_secs: 0,
            version: 0,
            value_type: "u8",
            stale_secs: 0,
            early_refresh: true,
            jitter: None,
            wait_for_lock: true,
            local_entries: 0,
            local_ttl_secs: 0,
            tags: "",
            stores_none: false,
            batch: false,
            codec: None,
        };
        let mut key = KeyBuilder::new();
        key.arg(&7u64);
        let call = key.finish();
        let stem = call.stem("p", &spec, 0xabc);
        assert_eq!(call.render_on(&stem), call.render("p", &spec, 0xabc));
    }

    #[test]
    fn hex_is_zero_padded() {
        let mut s = String::new();
        push_hex(&mut s, 0xabc, 8);
        assert_eq!(s, "00000abc");
    }

    #[test]
    fn long_arguments_hash_as_if_in_one_shot() {
        let long = "y".repeat(3 * INLINE);
        let mut spilled = KeyBuilder::new();
        spilled.arg(&1u8);
        spilled.arg(long.as_str());
        assert!(spilled.spilled.is_some());
        let mut bytes = vec![1u8];
        canonical::encode(long.as_str(), &mut bytes).unwrap();
        assert_eq!(spilled.finish().args, Some(xxh3_128(&bytes)));
    }

    #[test]
    fn length_prefixes_separate_split_strings() {
        let mut one = KeyBuilder::new();
        one.arg("a b");
        let mut two = KeyBuilder::new();
        two.arg("a");
        two.arg("b");
        assert_ne!(one.finish().args, two.finish().args);
    }
}
