//! Bytes a hostile or broken writer can leave under the cache's keys, for the tests that check a
//! read of them is a miss, never a crash or an unbounded allocation.
//!
//! An envelope is a 32-byte header (see `cache-runtime/src/envelope.rs`) and a payload; these
//! helpers write well-formed headers around crafted payloads, so the decoder itself is reached.

/// An envelope around `payload` (bincode, codec id 1), fresh for an hour; `lz4`: the payload is
/// an LZ4 block behind its original length, as the cache compresses.
pub fn envelope(payload: &[u8], lz4: bool) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let body = match lz4 {
        true => lz4_block(payload),
        false => payload.to_vec(),
    };
    let mut out = Vec::with_capacity(32 + body.len());
    out.extend_from_slice(b"RC");
    out.extend_from_slice(&[1, 1, u8::from(lz4), 0, 0, 0]);
    out.extend_from_slice(&now.to_le_bytes());
    out.extend_from_slice(&(now + 3_600_000).to_le_bytes());
    out.extend_from_slice(&1000u32.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// `payload` as the cache compresses it: its length (u32, little endian), then an LZ4 block.
fn lz4_block(payload: &[u8]) -> Vec<u8> {
    lz4_flex::block::compress_prepend_size(payload)
}

/// A bincode (standard, variable-length) unsigned integer.
pub fn varint(n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    bincode::encode_into_std_write(n, &mut out, bincode::config::standard()).unwrap();
    out
}

/// The peak memory of this process so far (`VmHWM`), in bytes; 0 where unknown.
pub fn peak_memory() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024)
        })
        .unwrap_or(0)
}
