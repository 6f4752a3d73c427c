//! MessagePack through rmp-serde, structs as maps with their field names, so that any language's
//! MessagePack library reads them as objects.

use serde::Serialize;
use serde::de::{DeserializeOwned, DeserializeSeed};

use super::{CodecError, Format, Guarded, Limits, limits};

#[derive(Debug)]
pub(super) struct MsgPack;

impl Format for MsgPack {
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        ::rmp_serde::encode::write_named(out, value).map_err(|e| CodecError::Format(e.to_string()))
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8], limits: Limits) -> Result<T, CodecError> {
        let left = limits::Left::new(limits);
        // Read through `Read` on the slice, which it advances: what is left afterwards is what
        // the value did not take. A claimed length is read with `take(len)`, so the buffer grows
        // with the bytes actually there, never with the claim.
        let mut rest = bytes;
        let mut de = ::rmp_serde::Deserializer::new(&mut rest);
        let value = Guarded::<T>::new(&left)
            .deserialize(&mut de)
            .map_err(|e| CodecError::decoding(&left, e))?;
        drop(de);
        match rest.len() {
            0 => Ok(value),
            trailing => Err(CodecError::trailing(trailing)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::for_values(crate::config::DEFAULT_MAX_VALUE_BYTES)
    }

    /// The start of a value after the value (an array or a map of one, missing its element) is
    /// trailing bytes too, not the end of the input.
    #[test]
    fn a_truncated_value_after_the_value_is_trailing_bytes() {
        let mut value = Vec::new();
        MsgPack::encode(&(7u32, "x"), &mut value).unwrap();
        assert!(MsgPack::decode::<(u32, String)>(&value, limits()).is_ok());
        for tail in [&[0x91][..], &[0x92, 0x01], &[0x81], &[0xc0]] {
            let mut bytes = value.clone();
            bytes.extend_from_slice(tail);
            let err = MsgPack::decode::<(u32, String)>(&bytes, limits()).unwrap_err();
            assert!(matches!(err, CodecError::Format(_)), "{tail:?}: {err}");
        }
    }
}
