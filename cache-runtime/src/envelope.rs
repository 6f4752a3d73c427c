//! The bytes stored under a key: a fixed header, then the codec's payload.
//!
//! ```text
//! offset size field
//!      0    2 magic "RC"
//!      2    1 envelope version (1)
//!      3    1 codec id
//!      4    1 flags (bit 0: compressed; no flag is defined yet, so any set bit is rejected)
//!      5    3 reserved, zero
//!      8    8 computed at, unix milliseconds, little endian
//!     16    8 fresh until, unix milliseconds (logical expiry, independent of the Redis TTL)
//!     24    4 computation time, microseconds (saturating)
//!     28    4 payload length in bytes
//!     32    . payload
//! ```
//!
//! [`open`] accepts any bytes and never panics: anything but a well-formed envelope of this
//! version and codec is an [`Invalid`] entry, which the flow treats as a miss and overwrites.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{Codec, CodecError, MAX_PAYLOAD_BYTES};

const MAGIC: [u8; 2] = *b"RC";
const VERSION: u8 = 1;
pub(crate) const HEADER_LEN: usize = 32;
const KNOWN_FLAGS: u8 = 0;

/// What the header says about a stored value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub computed_at_ms: u64,
    pub fresh_until_ms: u64,
    pub compute_micros: u32,
}

impl Meta {
    pub fn new(now: SystemTime, ttl: Duration, compute: Duration) -> Self {
        let computed_at_ms = unix_ms(now);
        Meta {
            computed_at_ms,
            fresh_until_ms: computed_at_ms.saturating_add(ttl.as_millis() as u64),
            compute_micros: u32::try_from(compute.as_micros()).unwrap_or(u32::MAX),
        }
    }
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Why stored bytes could not be read back.
#[derive(Debug)]
pub(crate) enum Invalid {
    Header(&'static str),
    Payload(CodecError),
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::Header(why) => write!(f, "bad envelope header: {why}"),
            Invalid::Payload(err) => write!(f, "undecodable payload: {err}"),
        }
    }
}

/// Encodes `value` behind a header; one allocation, sized by a first guess.
pub(crate) fn seal<C: Codec, T: Serialize + ?Sized>(
    value: &T,
    meta: Meta,
) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(HEADER_LEN + 128);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, C::ID, 0, 0, 0, 0]);
    out.extend_from_slice(&meta.computed_at_ms.to_le_bytes());
    out.extend_from_slice(&meta.fresh_until_ms.to_le_bytes());
    out.extend_from_slice(&meta.compute_micros.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    C::encode(value, &mut out)?;
    let len = out.len() - HEADER_LEN;
    if len > MAX_PAYLOAD_BYTES {
        return Err(CodecError(format!(
            "value is {len} bytes, more than the {MAX_PAYLOAD_BYTES} a cache entry may hold"
        )));
    }
    out[28..32].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(out)
}

/// Reads an envelope written by [`seal`] with the same codec.
pub(crate) fn open<C: Codec, T: DeserializeOwned>(bytes: &[u8]) -> Result<(Meta, T), Invalid> {
    let header: &[u8; HEADER_LEN] = bytes
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(Invalid::Header("shorter than the header"))?;
    if header[..2] != MAGIC {
        return Err(Invalid::Header("not written by redis_cache"));
    }
    if header[2] != VERSION {
        return Err(Invalid::Header("unknown envelope version"));
    }
    if header[3] != C::ID {
        return Err(Invalid::Header("written by another codec"));
    }
    if header[4] & !KNOWN_FLAGS != 0 || header[5..8] != [0; 3] {
        return Err(Invalid::Header("unknown flags"));
    }
    let u64_at = |i: usize| u64::from_le_bytes(header[i..i + 8].try_into().expect("8 bytes"));
    let u32_at = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
    let meta = Meta {
        computed_at_ms: u64_at(8),
        fresh_until_ms: u64_at(16),
        compute_micros: u32_at(24),
    };
    let payload = &bytes[HEADER_LEN..];
    if payload.len() != u32_at(28) as usize {
        return Err(Invalid::Header(
            "payload length does not match (truncated?)",
        ));
    }
    let value = C::decode(payload).map_err(Invalid::Payload)?;
    Ok((meta, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Bincode;

    fn sample() -> Vec<u8> {
        let meta = Meta::new(
            SystemTime::now(),
            Duration::from_secs(60),
            Duration::from_millis(3),
        );
        seal::<Bincode, _>(&("name".to_string(), vec![1u64, 2, 3]), meta).unwrap()
    }

    #[test]
    fn round_trip_keeps_meta_and_value() {
        let now = SystemTime::now();
        let meta = Meta::new(now, Duration::from_secs(60), Duration::from_millis(3));
        let bytes = seal::<Bincode, _>(&vec!["a".to_string()], meta).unwrap();
        let (back, value) = open::<Bincode, Vec<String>>(&bytes).unwrap();
        assert_eq!(back, meta);
        assert_eq!(value, vec!["a".to_string()]);
        assert_eq!(back.fresh_until_ms, unix_ms(now) + 60_000);
    }

    #[test]
    fn every_truncation_and_every_single_byte_change_in_the_header_is_rejected_or_harmless() {
        let bytes = sample();
        for len in 0..bytes.len() {
            assert!(
                open::<Bincode, (String, Vec<u64>)>(&bytes[..len]).is_err(),
                "len {len}"
            );
        }
        for i in (0..8).chain(28..32) {
            let mut bad = bytes.clone();
            bad[i] ^= 0x5A;
            assert!(
                open::<Bincode, (String, Vec<u64>)>(&bad).is_err(),
                "byte {i}"
            );
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A deterministic xorshift stream: varied lengths, valid and invalid headers.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let valid = sample();
        for round in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut bytes = if round % 2 == 0 {
                valid.clone()
            } else {
                vec![0; (x % 80) as usize]
            };
            for b in bytes
                .iter_mut()
                .skip(if round % 2 == 0 { HEADER_LEN } else { 0 })
            {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let _ = open::<Bincode, (String, Vec<u64>)>(&bytes);
            let _ = open::<Bincode, Option<Vec<String>>>(&bytes);
        }
    }
}
