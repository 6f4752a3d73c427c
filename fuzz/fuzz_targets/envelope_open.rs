//! Any bytes found under a key (another program's, a truncated write, a corrupt LZ4 block, a
//! length prefix claiming gigabytes) are refused without a panic and without allocating past
//! the codec's limit (`scripts/fuzz` runs this with `-malloc_limit_mb`). The bytes are read
//! with the codec their header names (byte 3), so every codec's decoder gets the input.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use redis_cached::__private::bench::open_in;
use redis_cached::Codec;

mod values;
use values::{Product, Value};

fuzz_target!(|bytes: &[u8]| {
    let codec = bytes
        .get(3)
        .and_then(|id| Codec::ENABLED.iter().copied().find(|c| c.id() == *id))
        .unwrap_or(Codec::DEFAULT);
    let _ = open_in::<Product>(codec, bytes);
    let _ = open_in::<Value>(codec, bytes);
    let _ = open_in::<String>(codec, bytes);
    let _ = open_in::<Vec<u64>>(codec, bytes);
    let _ = open_in::<Option<(u32, String)>>(codec, bytes);
    let _ = open_in::<BTreeMap<String, Vec<u8>>>(codec, bytes);
});
