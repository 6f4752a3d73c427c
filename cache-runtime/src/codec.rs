//! Turning values into payload bytes and back.
//!
//! The codec is chosen at compile time (today: bincode 2 through its serde support). Its id is
//! stored in every envelope and hashed into every key's fingerprint, so switching codecs moves a
//! function to new keys instead of decoding bytes written by another format.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest payload the codec accepts when decoding. Redis caps strings at 512 MiB; this is far
/// lower so that a corrupt length prefix can never make the decoder allocate a huge buffer.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 64 * 1024 * 1024;

/// A serde format that can store cached values.
pub(crate) trait Codec {
    /// Stored in the envelope header and in the key fingerprint. Never reuse an id.
    const ID: u8;
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError>;
    /// Fails on anything but exactly one well-formed value filling `bytes`.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError>;
}

/// The codec selected for this build.
pub(crate) type ActiveCodec = Bincode;

#[derive(Debug)]
pub(crate) struct CodecError(pub(crate) String);

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// bincode 2, standard configuration (little endian, variable-length integers).
#[derive(Debug)]
pub(crate) struct Bincode;

impl Bincode {
    fn config() -> impl bincode::config::Config {
        bincode::config::standard().with_limit::<MAX_PAYLOAD_BYTES>()
    }
}

impl Codec for Bincode {
    const ID: u8 = 1;

    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        bincode::serde::encode_into_std_write(value, out, Self::config())
            .map(drop)
            .map_err(|e| CodecError(e.to_string()))
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        let (value, read) = bincode::serde::decode_from_slice(bytes, Self::config())
            .map_err(|e| CodecError(e.to_string()))?;
        if read != bytes.len() {
            return Err(CodecError(format!(
                "{} trailing bytes after the value",
                bytes.len() - read
            )));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_trailing_bytes() {
        let mut out = Vec::new();
        Bincode::encode(&("a b".to_string(), 7u32), &mut out).unwrap();
        let back: (String, u32) = Bincode::decode(&out).unwrap();
        assert_eq!(back, ("a b".to_string(), 7));
        out.push(0);
        assert!(Bincode::decode::<(String, u32)>(&out).is_err());
    }

    #[test]
    fn huge_length_prefix_is_an_error_not_an_allocation() {
        // A varint length of u64::MAX followed by nothing.
        let bytes = [0xFD, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        assert!(Bincode::decode::<String>(&bytes).is_err());
        assert!(Bincode::decode::<Vec<u64>>(&bytes).is_err());
    }
}
