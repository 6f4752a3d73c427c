//! JSON through serde_json: what another language, or a person with `redis-cli`, can read.

use serde::Serialize;
use serde::de::{DeserializeOwned, DeserializeSeed};

use super::{CodecError, Format, Guarded, Limits, limits};

#[derive(Debug)]
pub(super) struct Json;

impl Format for Json {
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        ::serde_json::to_writer(out, value).map_err(|e| CodecError::Format(e.to_string()))
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8], limits: Limits) -> Result<T, CodecError> {
        let left = limits::Left::new(limits);
        let mut de = ::serde_json::Deserializer::from_slice(bytes);
        let value = Guarded::<T>::new(&left)
            .deserialize(&mut de)
            .and_then(|value| de.end().map(|()| value));
        value.map_err(
            |e| match e.is_syntax() && e.to_string().starts_with(RECURSION) {
                // serde_json's own depth limit (128) is below the guard's: the same kind of stop.
                true => CodecError::OverLimits(e.to_string()),
                false => CodecError::decoding(&left, e),
            },
        )
    }
}

/// How serde_json's error for a value nested past its limit begins.
const RECURSION: &str = "recursion limit exceeded";
