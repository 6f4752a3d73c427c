//! Any bytes found under a key (another program's, a truncated write, a corrupt LZ4 block, a
//! length prefix claiming gigabytes) are refused without a panic and without allocating past
//! the codec's limit (`scripts/fuzz` runs this with `-malloc_limit_mb`).
#![no_main]

use std::collections::BTreeMap;

use redis_cached::__private::bench::open;
use libfuzzer_sys::fuzz_target;

mod values;
use values::{Product, Value};

fuzz_target!(|bytes: &[u8]| {
    let _ = open::<Product>(bytes);
    let _ = open::<Value>(bytes);
    let _ = open::<String>(bytes);
    let _ = open::<Vec<u64>>(bytes);
    let _ = open::<Option<(u32, String)>>(bytes);
    let _ = open::<BTreeMap<String, Vec<u8>>>(bytes);
});
