//! Turning values into payload bytes and back.
//!
//! Each serde format is a cargo feature: `bincode` (the default), `postcard`, `json`, `msgpack`,
//! one file each. A cache picks one ([`CacheBuilder::codec`](crate::CacheBuilder::codec)), a
//! function may pick its own (`codec = "json"`). The codec's id is stored in every envelope and
//! hashed into every key's fingerprint, so switching codecs moves a function to new keys instead
//! of decoding bytes written by another format. Every decode goes through [`guard`], which bounds
//! its nesting depth and memory: bytes read from Redis are untrusted input.

#[cfg(not(any(
    feature = "bincode",
    feature = "postcard",
    feature = "json",
    feature = "msgpack"
)))]
compile_error!(
    "redis-cached needs a codec for the values it stores: enable at least one of its features \
     `bincode` (the default), `postcard`, `json` or `msgpack`"
);

#[cfg(feature = "bincode")]
mod bincode;
pub(crate) mod guard;
#[cfg(feature = "json")]
mod json;
pub(crate) mod limits;
#[cfg(feature = "msgpack")]
mod msgpack;
#[cfg(feature = "postcard")]
mod postcard;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) use limits::Limits;

/// Largest payload the codec accepts when decoding. Redis caps strings at 512 MiB; this is far
/// lower so that a corrupt length prefix can never make the decoder allocate a huge buffer.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 64 * 1024 * 1024;

/// One more than the largest [`Codec::id`]: a table indexed by codec id has this many slots.
pub(crate) const ID_SLOTS: usize = 5;

/// The serde format a cache stores its values in.
///
/// Each variant exists when its cargo feature is enabled: `bincode` (on by default), `postcard`,
/// `json`, `msgpack`. Set one for a cache with
/// [`CacheBuilder::codec`](crate::CacheBuilder::codec), or for one function with
/// `#[redis_cache(codec = "json")]`; without either, a cache uses [`Codec::DEFAULT`].
///
/// The codec is part of every key's fingerprint: a function that changes codec reads and writes
/// new keys, so processes on different codecs see misses, never each other's bytes. Its id is
/// also in every entry's header (see the envelope in `docs/behaviour.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// [bincode 2](https://docs.rs/bincode), standard configuration (little endian,
    /// variable-length integers): fast and compact. Id 1.
    #[cfg(feature = "bincode")]
    #[cfg_attr(docsrs, doc(cfg(feature = "bincode")))]
    Bincode,
    /// [postcard](https://docs.rs/postcard): the most compact, and maintained. Id 2.
    #[cfg(feature = "postcard")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postcard")))]
    Postcard,
    /// JSON ([serde_json](https://docs.rs/serde_json)): readable by any language and by a person
    /// with `redis-cli`; the largest and slowest. Id 3.
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    Json,
    /// [MessagePack](https://msgpack.org) ([rmp-serde](https://docs.rs/rmp-serde)), structs as
    /// maps with their field names: readable by any language's MessagePack library. Id 4.
    #[cfg(feature = "msgpack")]
    #[cfg_attr(docsrs, doc(cfg(feature = "msgpack")))]
    MsgPack,
}

impl Codec {
    /// The codec of a cache that does not choose one: `Bincode` when its feature is enabled
    /// (the default), otherwise the first enabled of `Postcard`, `MsgPack`, `Json`.
    #[cfg(feature = "bincode")]
    pub const DEFAULT: Codec = Codec::Bincode;
    #[cfg(all(not(feature = "bincode"), feature = "postcard"))]
    pub const DEFAULT: Codec = Codec::Postcard;
    #[cfg(all(
        not(feature = "bincode"),
        not(feature = "postcard"),
        feature = "msgpack"
    ))]
    pub const DEFAULT: Codec = Codec::MsgPack;
    #[cfg(all(
        not(feature = "bincode"),
        not(feature = "postcard"),
        not(feature = "msgpack"),
        feature = "json"
    ))]
    pub const DEFAULT: Codec = Codec::Json;

    /// Every codec this build has, in id order.
    pub const ENABLED: &'static [Codec] = &[
        #[cfg(feature = "bincode")]
        Codec::Bincode,
        #[cfg(feature = "postcard")]
        Codec::Postcard,
        #[cfg(feature = "json")]
        Codec::Json,
        #[cfg(feature = "msgpack")]
        Codec::MsgPack,
    ];

    /// The id stored in an entry's header and hashed into its key's fingerprint. Never reused.
    pub const fn id(self) -> u8 {
        match self {
            #[cfg(feature = "bincode")]
            Codec::Bincode => 1,
            #[cfg(feature = "postcard")]
            Codec::Postcard => 2,
            #[cfg(feature = "json")]
            Codec::Json => 3,
            #[cfg(feature = "msgpack")]
            Codec::MsgPack => 4,
        }
    }

    /// Its name, as its cargo feature and `codec = "..."` spell it.
    pub const fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "bincode")]
            Codec::Bincode => "bincode",
            #[cfg(feature = "postcard")]
            Codec::Postcard => "postcard",
            #[cfg(feature = "json")]
            Codec::Json => "json",
            #[cfg(feature = "msgpack")]
            Codec::MsgPack => "msgpack",
        }
    }

    /// Appends `value`'s encoding to `out`.
    pub(crate) fn encode<T: Serialize + ?Sized>(
        self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        match self {
            #[cfg(feature = "bincode")]
            Codec::Bincode => bincode::Bincode::encode(value, out),
            #[cfg(feature = "postcard")]
            Codec::Postcard => postcard::Postcard::encode(value, out),
            #[cfg(feature = "json")]
            Codec::Json => json::Json::encode(value, out),
            #[cfg(feature = "msgpack")]
            Codec::MsgPack => msgpack::MsgPack::encode(value, out),
        }
    }

    /// Decodes exactly one `T` filling `bytes`, within `limits`.
    pub(crate) fn decode<T: DeserializeOwned>(
        self,
        bytes: &[u8],
        limits: Limits,
    ) -> Result<T, CodecError> {
        match self {
            #[cfg(feature = "bincode")]
            Codec::Bincode => bincode::Bincode::decode(bytes, limits),
            #[cfg(feature = "postcard")]
            Codec::Postcard => postcard::Postcard::decode(bytes, limits),
            #[cfg(feature = "json")]
            Codec::Json => json::Json::decode(bytes, limits),
            #[cfg(feature = "msgpack")]
            Codec::MsgPack => msgpack::MsgPack::decode(bytes, limits),
        }
    }
}

impl Default for Codec {
    fn default() -> Self {
        Codec::DEFAULT
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One serde format: its encoding, and a decode that fails on anything but exactly one
/// well-formed value filling the bytes, or one that nests or allocates past the limits.
trait Format {
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError>;
    fn decode<T: DeserializeOwned>(bytes: &[u8], limits: Limits) -> Result<T, CodecError>;
}

#[derive(Debug)]
pub(crate) enum CodecError {
    /// The format could not encode the value, or the bytes are not a value of the type.
    Format(String),
    /// Decoding stopped at its [`Limits`] (nesting depth, decoded memory).
    OverLimits(String),
    /// A value just encoded does not decode into its own type: its `Serialize` and
    /// `Deserialize` disagree, so no entry of its function would ever be read.
    DoesNotReadBack(String),
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::Format(message)
            | CodecError::OverLimits(message)
            | CodecError::DoesNotReadBack(message) => f.write_str(message),
        }
    }
}

impl CodecError {
    /// A decode error: [`CodecError::OverLimits`] when it stopped at one of `left`'s limits.
    fn decoding(left: &limits::Left, err: impl std::fmt::Display) -> CodecError {
        match left.exceeded() {
            true => CodecError::OverLimits(err.to_string()),
            false => CodecError::Format(err.to_string()),
        }
    }

    #[cfg(any(feature = "bincode", feature = "postcard", feature = "msgpack"))]
    fn trailing(bytes: usize) -> CodecError {
        CodecError::Format(format!("{bytes} trailing bytes after the value"))
    }
}

/// Decodes a `T` through [`guard`]: the seed every format decodes with.
struct Guarded<'l, T>(&'l limits::Left, std::marker::PhantomData<fn() -> T>);

impl<'l, T> Guarded<'l, T> {
    fn new(left: &'l limits::Left) -> Self {
        Guarded(left, std::marker::PhantomData)
    }
}

impl<'de, T: DeserializeOwned> serde::de::DeserializeSeed<'de> for Guarded<'_, T> {
    type Value = T;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        guard::deserialize(deserializer, self.0)
    }
}

/// What every codec must do, run on each one this build has (the workspace's tests turn them
/// all on); bincode's own cases are in its file.
#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Record {
        id: u64,
        name: String,
        price: Option<u32>,
        tags: Vec<String>,
        ratings: BTreeMap<String, (u8, i64)>,
        kind: Kind,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Kind {
        Plain,
        Sized(u32),
        Named { width: u16 },
    }

    #[derive(Debug, Serialize, Deserialize)]
    struct Node {
        children: Vec<Node>,
    }

    fn limits() -> Limits {
        Limits::for_values(crate::config::DEFAULT_MAX_VALUE_BYTES)
    }

    fn encoded<T: Serialize + ?Sized>(codec: Codec, value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        codec.encode(value, &mut out).expect("encodes");
        out
    }

    #[test]
    fn ids_and_names_are_distinct_and_within_the_table() {
        for (i, a) in Codec::ENABLED.iter().enumerate() {
            assert!(usize::from(a.id()) < ID_SLOTS && a.id() > 0, "{a}");
            for b in &Codec::ENABLED[i + 1..] {
                assert!(a.id() != b.id() && a.name() != b.name());
            }
        }
        assert!(Codec::ENABLED.contains(&Codec::DEFAULT));
    }

    #[test]
    fn every_codec_round_trips_records_and_refuses_trailing_bytes() {
        let record = Record {
            id: 7,
            name: "a b".into(),
            price: None,
            tags: vec!["x".into(), String::new()],
            ratings: BTreeMap::from([("alice".into(), (5, -1))]),
            kind: Kind::Named { width: 3 },
        };
        for &codec in Codec::ENABLED {
            let mut bytes = encoded(codec, &record);
            assert_eq!(
                codec.decode::<Record>(&bytes, limits()).unwrap(),
                record,
                "{codec}"
            );
            for kind in [Kind::Plain, Kind::Sized(9)] {
                let back: Kind = codec.decode(&encoded(codec, &kind), limits()).unwrap();
                assert_eq!(back, kind, "{codec}");
            }
            // A second value after the first (for JSON, one that is not whitespace).
            bytes.extend_from_slice(&encoded(codec, &1u8));
            let err = codec.decode::<Record>(&bytes, limits()).unwrap_err();
            assert!(matches!(err, CodecError::Format(_)), "{codec}: {err}");
            // Another type's bytes are an error, not a panic.
            assert!(
                codec
                    .decode::<Vec<u64>>(&encoded(codec, &record), limits())
                    .is_err()
            );
        }
    }

    #[test]
    fn every_codec_stops_a_deep_value_at_the_depth_limit_on_a_small_stack() {
        for &codec in Codec::ENABLED {
            let mut deep = Node { children: vec![] };
            for _ in 0..2_000 {
                deep = Node {
                    children: vec![deep],
                };
            }
            let bytes = std::thread::Builder::new()
                .stack_size(16 << 20)
                .spawn(move || {
                    let bytes = encoded(codec, &deep);
                    // Dropping 2,000 levels recursively needs the big stack too.
                    drop(deep);
                    bytes
                })
                .unwrap()
                .join()
                .unwrap();
            eprintln!("{codec}");
            let result = std::thread::Builder::new()
                .stack_size(1024 * 1024)
                .spawn(move || codec.decode::<Node>(&bytes, limits()).map(drop))
                .unwrap()
                .join()
                .expect("no overflow");
            let err = result.unwrap_err();
            assert!(matches!(err, CodecError::OverLimits(_)), "{codec}: {err}");
        }
    }

    #[test]
    fn every_codec_charges_decoded_memory_to_the_budget() {
        // 100,000 empty strings: at most 300 KB encoded, 2.4 MB of `String`s in memory, over
        // the smallest budget (1 MiB).
        let strings = vec![String::new(); 100_000];
        for &codec in Codec::ENABLED {
            let bytes = encoded(codec, &strings);
            let err = codec
                .decode::<Vec<String>>(&bytes, Limits::for_values(1024))
                .unwrap_err();
            assert!(matches!(err, CodecError::OverLimits(_)), "{codec}: {err}");
            let few = encoded(codec, &strings[..1000]);
            assert_eq!(
                codec
                    .decode::<Vec<String>>(&few, Limits::for_values(1024))
                    .unwrap()
                    .len(),
                1000
            );
        }
    }
}
