//! MessagePack through rmp-serde, structs as maps with their field names, so that any language's
//! MessagePack library reads them as objects.

use serde::Deserialize;
use serde::Serialize;
use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny};

use super::{CodecError, Format, Guarded, Limits, limits};

#[derive(Debug)]
pub(super) struct MsgPack;

impl Format for MsgPack {
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        ::rmp_serde::encode::write_named(out, value).map_err(|e| CodecError::Format(e.to_string()))
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8], limits: Limits) -> Result<T, CodecError> {
        let left = limits::Left::new(limits);
        // Reads from the slice itself: a claimed length is checked against what is left of it
        // before anything is allocated (the `Read`-based reader would allocate the claim).
        let mut de = ::rmp_serde::Deserializer::from_read_ref(bytes);
        let value = Guarded::<T>::new(&left)
            .deserialize(&mut de)
            .map_err(|e| CodecError::decoding(&left, e))?;
        // The reader does not say what it left: anything that reads as one more value means
        // trailing bytes, and only the end of the input may stop it.
        match IgnoredAny::deserialize(&mut de) {
            Err(::rmp_serde::decode::Error::InvalidMarkerRead(e))
                if e.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                Ok(value)
            }
            _ => Err(CodecError::Format("trailing bytes after the value".into())),
        }
    }
}
