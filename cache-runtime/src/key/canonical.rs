//! The canonical encoding of key arguments: what a call's arguments hash over.
//!
//! It is bincode 2's standard layout (little endian, variable-length integers), written here
//! rather than borrowed from a codec so that keys do not depend on which codec features a build
//! has: a build without bincode derives the same keys as one with it, and as every release
//! before codecs became features. `unit_tests` checks it byte for byte against bincode.
//!
//! - integers: `u8`/`i8` as one byte; wider ones as a varint (up to 250 in one byte, else a marker
//!   251/252/253/254 and 2/4/8/16 bytes), signed ones zigzag-encoded first;
//! - floats: their little-endian bytes; `bool`: one byte; `char`: its UTF-8 bytes;
//! - strings, byte strings, sequences and maps: their length as a varint, then the contents;
//! - `Option`: 0, or 1 then the value; enum variants: the variant's index as a varint, then the
//!   fields; structs and tuples: the fields in order, no names.
//!
//! A sequence or map without a known length cannot be encoded (the call is then not cached);
//! `collect_str` (a type keyed by its `Display`) is encoded as the string, as bincode does.

use serde::ser::{self, Serialize};

const SINGLE_BYTE_MAX: u8 = 250;
const U16_BYTE: u8 = 251;
const U32_BYTE: u8 = 252;
const U64_BYTE: u8 = 253;
const U128_BYTE: u8 = 254;

/// Where the encoding goes.
pub(super) trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

/// Encodes `value` into `sink`; `Err` if it has a sequence or map of unknown length, or its
/// `Serialize` fails.
pub(super) fn encode<T: Serialize + ?Sized, S: Sink>(value: &T, sink: &mut S) -> Result<(), Error> {
    value.serialize(Encoder(sink))
}

#[derive(Debug)]
pub(super) struct Error;

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the argument cannot be hashed into a key")
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Error
    }
}

struct Encoder<'s, S>(&'s mut S);

impl<S: Sink> Encoder<'_, S> {
    fn varint(&mut self, value: u128) {
        if value <= u128::from(SINGLE_BYTE_MAX) {
            self.0.put(&[value as u8]);
        } else if let Ok(v) = u16::try_from(value) {
            self.0.put(&[U16_BYTE]);
            self.0.put(&v.to_le_bytes());
        } else if let Ok(v) = u32::try_from(value) {
            self.0.put(&[U32_BYTE]);
            self.0.put(&v.to_le_bytes());
        } else if let Ok(v) = u64::try_from(value) {
            self.0.put(&[U64_BYTE]);
            self.0.put(&v.to_le_bytes());
        } else {
            self.0.put(&[U128_BYTE]);
            self.0.put(&value.to_le_bytes());
        }
    }

    /// Zigzag: 0, -1, 1, -2, 2... become 0, 1, 2, 3, 4...
    fn signed(&mut self, value: i128) {
        self.varint(((value << 1) ^ (value >> 127)) as u128);
    }

    fn len(&mut self, len: Option<usize>) -> Result<(), Error> {
        self.varint(len.ok_or(Error)? as u128);
        Ok(())
    }

    fn reborrow(&mut self) -> Encoder<'_, S> {
        Encoder(self.0)
    }
}

impl<'s, S: Sink> ser::Serializer for Encoder<'s, S> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.0.put(&[u8::from(v)]);
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.0.put(&[v as u8]);
        Ok(())
    }
    fn serialize_i16(mut self, v: i16) -> Result<(), Error> {
        self.signed(v.into());
        Ok(())
    }
    fn serialize_i32(mut self, v: i32) -> Result<(), Error> {
        self.signed(v.into());
        Ok(())
    }
    fn serialize_i64(mut self, v: i64) -> Result<(), Error> {
        self.signed(v.into());
        Ok(())
    }
    fn serialize_i128(mut self, v: i128) -> Result<(), Error> {
        self.signed(v);
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.0.put(&[v]);
        Ok(())
    }
    fn serialize_u16(mut self, v: u16) -> Result<(), Error> {
        self.varint(v.into());
        Ok(())
    }
    fn serialize_u32(mut self, v: u32) -> Result<(), Error> {
        self.varint(v.into());
        Ok(())
    }
    fn serialize_u64(mut self, v: u64) -> Result<(), Error> {
        self.varint(v.into());
        Ok(())
    }
    fn serialize_u128(mut self, v: u128) -> Result<(), Error> {
        self.varint(v);
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.0.put(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.0.put(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.0.put(v.encode_utf8(&mut [0; 4]).as_bytes());
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.serialize_bytes(v.as_bytes())
    }
    fn serialize_bytes(mut self, v: &[u8]) -> Result<(), Error> {
        self.varint(v.len() as u128);
        self.0.put(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.0.put(&[0]);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        self.0.put(&[1]);
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        Ok(())
    }
    fn serialize_unit_variant(
        mut self,
        _: &'static str,
        index: u32,
        _: &'static str,
    ) -> Result<(), Error> {
        self.varint(index.into());
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        mut self,
        _: &'static str,
        index: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.varint(index.into());
        value.serialize(self)
    }
    fn serialize_seq(mut self, len: Option<usize>) -> Result<Self, Error> {
        self.len(len)?;
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, Error> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Error> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        mut self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Error> {
        self.varint(index.into());
        Ok(self)
    }
    fn serialize_map(mut self, len: Option<usize>) -> Result<Self, Error> {
        self.len(len)?;
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Error> {
        Ok(self)
    }
    fn serialize_struct_variant(
        mut self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Error> {
        self.varint(index.into());
        Ok(self)
    }
}

/// Every compound writes its elements in order, and nothing around them.
macro_rules! elements {
    ($($trait:ident :: $method:ident $(($key:ident))?),* $(,)?) => {
        $(
            impl<S: Sink> ser::$trait for Encoder<'_, S> {
                type Ok = ();
                type Error = Error;
                fn $method<T: Serialize + ?Sized>(
                    &mut self,
                    $($key: &'static str,)?
                    value: &T,
                ) -> Result<(), Error> {
                    $(let _ = $key;)?
                    value.serialize(self.reborrow())
                }
                fn end(self) -> Result<(), Error> {
                    Ok(())
                }
            }
        )*
    };
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
    SerializeStruct::serialize_field(_name),
    SerializeStructVariant::serialize_field(_name),
);

impl<S: Sink> ser::SerializeMap for Encoder<'_, S> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        key.serialize(self.reborrow())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(self.reborrow())
    }
    fn end(self) -> Result<(), Error> {
        Ok(())
    }
}

#[cfg(test)]
impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod unit_tests {
    use serde::Serialize;

    use super::encode;

    fn canonical<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        encode(value, &mut out).expect("encodes");
        out
    }

    #[derive(Serialize)]
    struct Unit;

    #[derive(Serialize)]
    struct Page<'a> {
        id: u64,
        filter: Option<&'a str>,
        sort: Sort,
        ids: Vec<i32>,
    }

    #[derive(Serialize)]
    enum Sort {
        #[allow(dead_code)]
        Name,
        Price(bool),
        #[allow(dead_code)]
        Range(u8, u16),
        #[allow(dead_code)]
        Near {
            lat: f32,
            lon: f64,
        },
    }

    #[test]
    fn the_layout_by_example() {
        assert_eq!(canonical(&250u16), [250]);
        assert_eq!(canonical(&300u16), [251, 44, 1]);
        assert_eq!(canonical(&70_000u64), [252, 0x70, 0x11, 1, 0]);
        assert_eq!(canonical(&-1i32), [1]);
        assert_eq!(canonical(&1i64), [2]);
        assert_eq!(canonical(&255u8), [255]);
        assert_eq!(canonical(&"ab"), [2, b'a', b'b']);
        assert_eq!(canonical(&'é'), "é".as_bytes());
        assert_eq!(canonical(&Some(7u32)), [1, 7]);
        assert_eq!(canonical(&(Unit, ())), [] as [u8; 0]);
        assert_eq!(canonical(&Sort::Price(true)), [1, 1]);
        let page = Page {
            id: 1,
            filter: None,
            sort: Sort::Price(true),
            ids: vec![-1],
        };
        assert_eq!(canonical(&page), [1, 0, 1, 1, 1, 1]);
        assert!(encode(&Unsized, &mut Vec::new()).is_err());
        assert_eq!(canonical(&Shown), [2, b'a', b'b']);
    }

    /// A type serialized through its `Display`.
    struct Shown;

    impl Serialize for Shown {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str("ab")
        }
    }

    /// A sequence that does not say its length.
    struct Unsized;

    impl Serialize for Unsized {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            s.serialize_seq(None)?.end()
        }
    }

    /// The keys of every release before codecs became features were bincode's bytes: they are
    /// still, byte for byte.
    #[cfg(feature = "bincode")]
    #[test]
    fn matches_bincode_byte_for_byte() {
        use std::collections::BTreeMap;

        fn same<T: Serialize + ?Sized>(value: &T) {
            let bincode =
                ::bincode::serde::encode_to_vec(value, ::bincode::config::standard()).unwrap();
            assert_eq!(canonical(value), bincode);
        }
        for v in [0u64, 250, 251, 65_535, 65_536, u32::MAX.into(), u64::MAX] {
            same(&v);
            same(&(v as u16));
            same(&(v as u32));
            same(&(v as i64));
            same(&(v as i64).wrapping_neg());
            same(&(v as i16));
            same(&(v as i32));
            same(&(v as u8));
            same(&(v as i8));
        }
        for v in [0u128, u128::from(u64::MAX) + 1, u128::MAX] {
            same(&v);
            same(&(v as i128));
            same(&(v as i128).wrapping_neg());
        }
        same(&i128::MIN);
        same(&(1.5f32, -0.0f64, f64::NAN, true, false));
        for c in ['a', 'é', '€', '😀'] {
            same(&c);
        }
        same(&"x".repeat(300));
        same(&("", "a b", String::from("c")));
        same(&(None::<u8>, Some("s"), (), Unit));
        same(&Page {
            id: 1 << 40,
            filter: Some("red"),
            sort: Sort::Near {
                lat: 1.0,
                lon: -2.0,
            },
            ids: vec![-1, 0, 1 << 20],
        });
        same(&[Sort::Name, Sort::Price(false), Sort::Range(3, 400)]);
        same(&BTreeMap::from([("k", vec![1u32, 2]), ("l", vec![])]));
        same(&vec![vec![0u8; 3]; 2]);
    }
}
