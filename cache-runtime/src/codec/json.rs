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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every finite `f64` reads back bit for bit (serde_json's `float_roundtrip`): a hit returns
    /// the number the miss computed.
    #[test]
    fn every_float_reads_back_exactly() {
        let limits = Limits::for_values(crate::config::DEFAULT_MAX_VALUE_BYTES);
        let mut rng = fastrand::Rng::with_seed(7);
        let floats: Vec<f64> = std::iter::repeat_with(|| f64::from_bits(rng.u64(..)))
            .filter(|f| f.is_finite())
            .take(20_000)
            .chain([
                930.683_839_909_709_7,
                0.1,
                -0.0,
                f64::MIN_POSITIVE,
                f64::MAX,
            ])
            .collect();
        let mut bytes = Vec::new();
        Json::encode(&floats, &mut bytes).unwrap();
        let back: Vec<f64> = Json::decode(&bytes, limits).unwrap();
        for (a, b) in floats.iter().zip(&back) {
            assert_eq!(a.to_bits(), b.to_bits(), "{a} read back as {b}");
        }
    }
}
