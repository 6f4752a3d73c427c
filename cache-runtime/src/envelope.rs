//! The bytes stored under a key: a fixed header, then the codec's payload.
//!
//! ```text
//! offset size field
//!      0    2 magic "RC"
//!      2    1 envelope version (1)
//!      3    1 codec id
//!      4    1 flags: bit 0, the payload is LZ4-compressed (a u32 little-endian original
//!               length, then an LZ4 block); any other set bit is rejected
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

use crate::codec::{Codec, CodecError, Limits, MAX_PAYLOAD_BYTES};

const MAGIC: [u8; 2] = *b"RC";
const VERSION: u8 = 1;
pub(crate) const HEADER_LEN: usize = 32;
/// The payload is an LZ4 block behind its original length.
const FLAG_LZ4: u8 = 1;
const KNOWN_FLAGS: u8 = FLAG_LZ4;
/// Compression is kept only if it saves at least this fraction (1/8) of the payload.
const MIN_SAVING_SHIFT: u32 = 3;

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

#[inline]
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

/// Encodes `value` behind a header, compressing payloads longer than `compress_above` bytes when
/// that saves at least an eighth of them.
pub(crate) fn seal<T: Serialize + ?Sized>(
    codec: Codec,
    value: &T,
    meta: Meta,
    compress_above: usize,
) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(HEADER_LEN + 128);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, codec.id(), 0, 0, 0, 0]);
    out.extend_from_slice(&meta.computed_at_ms.to_le_bytes());
    out.extend_from_slice(&meta.fresh_until_ms.to_le_bytes());
    out.extend_from_slice(&meta.compute_micros.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    codec.encode(value, &mut out)?;
    let len = out.len() - HEADER_LEN;
    if len > MAX_PAYLOAD_BYTES {
        return Err(CodecError::Format(format!(
            "value is {len} bytes, more than the {MAX_PAYLOAD_BYTES} a cache entry may hold"
        )));
    }
    if len > compress_above {
        let packed = lz4_flex::block::compress_prepend_size(&out[HEADER_LEN..]);
        if packed.len() <= len - (len >> MIN_SAVING_SHIFT) {
            out.truncate(HEADER_LEN);
            out.extend_from_slice(&packed);
            out[4] = FLAG_LZ4;
        }
    }
    let stored = (out.len() - HEADER_LEN) as u32;
    out[28..32].copy_from_slice(&stored.to_le_bytes());
    Ok(out)
}

/// Reads an envelope written by [`seal`] with `codec`, within `limits`: an entry longer
/// than a cache with these limits writes is not even parsed.
pub(crate) fn open<T: DeserializeOwned>(
    codec: Codec,
    bytes: &[u8],
    limits: Limits,
) -> Result<(Meta, T), Invalid> {
    if bytes.len() > limits.stored.saturating_add(HEADER_LEN) {
        return Err(Invalid::Header(
            "longer than the largest entry the cache stores (max_value_bytes)",
        ));
    }
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
    if header[3] != codec.id() {
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
    let value = if header[4] & FLAG_LZ4 != 0 {
        codec.decode(&decompress(payload, limits)?, limits)
    } else {
        codec.decode(payload, limits)
    }
    .map_err(Invalid::Payload)?;
    Ok((meta, value))
}

/// Undoes the compression of [`seal`], refusing lengths a corrupt prefix could claim (past the
/// decode budget: a compressed entry expands, within what decoding it may take anyway).
fn decompress(payload: &[u8], limits: Limits) -> Result<Vec<u8>, Invalid> {
    let (len, block) = payload
        .split_first_chunk::<4>()
        .ok_or(Invalid::Header("compressed payload without its length"))?;
    let len = u32::from_le_bytes(*len) as usize;
    if len > MAX_PAYLOAD_BYTES || len > limits.budget {
        return Err(Invalid::Header(
            "compressed payload claims an oversized length",
        ));
    }
    let mut out = vec![0; len];
    match lz4_flex::block::decompress_into(block, &mut out) {
        Ok(n) if n == len => Ok(out),
        _ => Err(Invalid::Header("compressed payload does not decompress")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    /// Any codec this build has: the envelope does not depend on it.
    const C: Codec = Codec::DEFAULT;

    /// The limits of a cache with the default `max_value_bytes`.
    fn limits() -> Limits {
        Limits::for_values(crate::config::DEFAULT_MAX_VALUE_BYTES)
    }

    fn sample() -> Vec<u8> {
        let meta = Meta::new(
            SystemTime::now(),
            Duration::from_secs(60),
            Duration::from_millis(3),
        );
        seal(C, &("name".to_string(), vec![1u64, 2, 3]), meta, usize::MAX).unwrap()
    }

    #[test]
    fn round_trip_keeps_meta_and_value() {
        let now = SystemTime::now();
        let meta = Meta::new(now, Duration::from_secs(60), Duration::from_millis(3));
        let bytes = seal(C, &vec!["a".to_string()], meta, usize::MAX).unwrap();
        let (back, value) = open::<Vec<String>>(C, &bytes, limits()).unwrap();
        assert_eq!(back, meta);
        assert_eq!(value, vec!["a".to_string()]);
        assert_eq!(back.fresh_until_ms, unix_ms(now) + 60_000);
    }

    #[test]
    fn every_truncation_and_every_single_byte_change_in_the_header_is_rejected_or_harmless() {
        let bytes = sample();
        for len in 0..bytes.len() {
            assert!(
                open::<(String, Vec<u64>)>(C, &bytes[..len], limits()).is_err(),
                "len {len}"
            );
        }
        for i in (0..8).chain(28..32) {
            let mut bad = bytes.clone();
            bad[i] ^= 0x5A;
            assert!(
                open::<(String, Vec<u64>)>(C, &bad, limits()).is_err(),
                "byte {i}"
            );
        }
    }

    #[test]
    fn large_repetitive_payloads_are_compressed_and_read_back() {
        let meta = Meta::new(SystemTime::now(), Duration::from_secs(60), Duration::ZERO);
        let value: Vec<String> = (0..500)
            .map(|i| format!("product name {}", i % 7))
            .collect();
        let plain = seal(C, &value, meta, usize::MAX).unwrap();
        let packed = seal(C, &value, meta, 1024).unwrap();
        assert_eq!(plain[4], 0);
        assert_eq!(packed[4], FLAG_LZ4);
        assert!(
            packed.len() * 4 < plain.len(),
            "{} vs {}",
            packed.len(),
            plain.len()
        );
        assert_eq!(open::<Vec<String>>(C, &packed, limits()).unwrap().1, value);
        // Small or incompressible payloads stay as they are.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert_eq!(seal(C, &noise, meta, 1024).unwrap()[4], 0);
        assert_eq!(seal(C, &value[..2], meta, 1024).unwrap()[4], 0);
    }

    #[test]
    fn a_compressed_payload_claiming_a_huge_length_is_invalid_without_allocating_it() {
        let meta = Meta::new(SystemTime::now(), Duration::from_secs(60), Duration::ZERO);
        let value: Vec<u64> = vec![7; 10_000];
        let mut packed = seal(C, &value, meta, 0).unwrap();
        assert_eq!(packed[4], FLAG_LZ4);
        packed[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(open::<Vec<u64>>(C, &packed, limits()).is_err());
        // And every truncation of a compressed envelope is rejected.
        let packed = seal(C, &value, meta, 0).unwrap();
        for len in 0..packed.len() {
            assert!(
                open::<Vec<u64>>(C, &packed[..len], limits()).is_err(),
                "len {len}"
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
            let _ = open::<(String, Vec<u64>)>(C, &bytes, limits());
            let _ = open::<Option<Vec<String>>>(C, &bytes, limits());
        }
    }
}
