//! bincode 2, standard configuration (little endian, variable-length integers): the default.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{CodecError, Format, Guarded, Limits, MAX_PAYLOAD_BYTES, limits};

#[derive(Debug)]
pub(super) struct Bincode;

impl Bincode {
    fn config() -> impl ::bincode::config::Config {
        ::bincode::config::standard().with_limit::<MAX_PAYLOAD_BYTES>()
    }
}

impl Format for Bincode {
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        ::bincode::serde::encode_into_std_write(value, out, Self::config())
            .map(drop)
            .map_err(|e| CodecError::Format(e.to_string()))
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8], limits: Limits) -> Result<T, CodecError> {
        let left = limits::Left::new(limits);
        let (value, read) = ::bincode::serde::seed_decode_from_slice(
            Guarded::<T>::new(&left),
            bytes,
            Self::config(),
        )
        .map_err(|e| CodecError::decoding(&left, e))?;
        match bytes.len() - read {
            0 => Ok(value),
            trailing => Err(CodecError::trailing(trailing)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::limits::MIN_BUDGET;

    /// The limits of a cache with the default `max_value_bytes`.
    fn limits() -> Limits {
        Limits::for_values(crate::config::DEFAULT_MAX_VALUE_BYTES)
    }

    #[test]
    fn round_trips_and_rejects_trailing_bytes() {
        let mut out = Vec::new();
        Bincode::encode(&("a b".to_string(), 7u32), &mut out).unwrap();
        let back: (String, u32) = Bincode::decode(&out, limits()).unwrap();
        assert_eq!(back, ("a b".to_string(), 7));
        out.push(0);
        assert!(Bincode::decode::<(String, u32)>(&out, limits()).is_err());
    }

    #[test]
    fn huge_length_prefix_is_an_error_not_an_allocation() {
        // A varint length of u64::MAX followed by nothing.
        let bytes = [0xFD, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        assert!(Bincode::decode::<String>(&bytes, limits()).is_err());
        assert!(Bincode::decode::<Vec<u64>>(&bytes, limits()).is_err());
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Node {
        children: Vec<Node>,
    }

    /// Decodes on a thread with a quarter of a Tokio worker's stack (2 MiB): a crafted value
    /// must be an error there, not an overflow (even in a debug build).
    fn on_small_stack<T: DeserializeOwned + Send + 'static>(bytes: Vec<u8>) -> Result<T, String> {
        std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || Bincode::decode::<T>(&bytes, limits()).map_err(|e| e.to_string()))
            .unwrap()
            .join()
            .expect("no overflow")
    }

    #[test]
    fn a_recursive_value_nested_past_the_limit_is_an_error_not_an_overflow() {
        // `0x01` (one child) a million times: a million levels.
        let deep = vec![1u8; 1_000_000];
        let err = on_small_stack::<Node>(deep).unwrap_err();
        assert!(err.contains("nests deeper"), "{err}");
        // Within the limit it decodes: 100 levels of one child, then a leaf.
        let mut ok = vec![1u8; 100];
        ok.push(0);
        assert!(on_small_stack::<Node>(ok).is_ok());
    }

    #[test]
    fn claimed_lengths_are_bounded_by_the_budget_not_by_the_input() {
        // The smallest budget: 1 MiB.
        let limits = Limits::for_values(1024);
        assert_eq!(limits.budget, MIN_BUDGET);
        // A `Vec<()>` claiming 2^63 elements: no byte per element, it would loop for ever.
        let mut zsts = Vec::new();
        ::bincode::encode_into_std_write(1u64 << 63, &mut zsts, ::bincode::config::standard())
            .unwrap();
        let err = Bincode::decode::<Vec<()>>(&zsts, limits).unwrap_err();
        assert!(
            matches!(&err, CodecError::OverLimits(e) if e.contains("more memory")),
            "{err}"
        );
        // 100,000 empty strings: 100 KB encoded, 2.4 MB of `String`s in memory.
        let mut strings = Vec::new();
        ::bincode::encode_into_std_write(100_000u64, &mut strings, ::bincode::config::standard())
            .unwrap();
        strings.extend(std::iter::repeat_n(0u8, 100_000));
        let err = Bincode::decode::<Vec<String>>(&strings, limits).unwrap_err();
        assert!(
            matches!(&err, CodecError::OverLimits(e) if e.contains("more memory")),
            "{err}"
        );
        // The same value, small enough, decodes.
        let mut few = Vec::new();
        ::bincode::encode_into_std_write(1000u64, &mut few, ::bincode::config::standard()).unwrap();
        few.extend(std::iter::repeat_n(0u8, 1000));
        assert_eq!(
            Bincode::decode::<Vec<String>>(&few, limits).unwrap().len(),
            1000
        );
    }
}
