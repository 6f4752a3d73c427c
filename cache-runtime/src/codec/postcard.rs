//! postcard: varint integers and length prefixes, no field names; the most compact.

use serde::Serialize;
use serde::de::{DeserializeOwned, DeserializeSeed};

use super::{CodecError, Format, Guarded, Limits, limits};

#[derive(Debug)]
pub(super) struct Postcard;

impl Format for Postcard {
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        // `to_extend` takes the buffer by value: on an error it is dropped, and so is the entry.
        *out = ::postcard::to_extend(value, std::mem::take(out))
            .map_err(|e| CodecError::Format(e.to_string()))?;
        Ok(())
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8], limits: Limits) -> Result<T, CodecError> {
        let left = limits::Left::new(limits);
        let mut de = ::postcard::Deserializer::from_bytes(bytes);
        let value = Guarded::<T>::new(&left)
            .deserialize(&mut de)
            .map_err(|e| CodecError::decoding(&left, e))?;
        match de.finalize() {
            Ok([]) => Ok(value),
            Ok(rest) => Err(CodecError::trailing(rest.len())),
            Err(e) => Err(CodecError::Format(e.to_string())),
        }
    }
}
