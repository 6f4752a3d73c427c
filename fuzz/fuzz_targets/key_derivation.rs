//! Keys: any arguments give a key made of the key characters only, under the prefix, the same
//! every time; different arguments give different keys (a collision would be a bug of the hash
//! input, not of the 128-bit hash, at these sizes); and the arguments hash exactly as their
//! bincode 2 encoding did before keys had an encoding of their own (`key::canonical`), so no key
//! moved.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_cached::__private::bench::{fingerprint, key};
use redis_cached::__private::{KeyBuilder, SiteSpec};

mod values;
use values::Value;

static SPEC: SiteSpec = SiteSpec {
    module: "fuzz",
    function: "derive",
    name: None,
    ttl_secs: 60,
    none_ttl_secs: 0,
    version: 0,
    value_type: "Value",
    stale_secs: 0,
    early_refresh: true,
    jitter: None,
    wait_for_lock: true,
    local_entries: 0,
    local_ttl_secs: 0,
    tags: "",
    stores_none: false,
    batch: false,
    codec: None,
};

fn derive(args: &[Value]) -> Option<String> {
    let mut builder = KeyBuilder::new();
    for arg in args {
        builder.arg(arg);
    }
    key("fuzz-prefix", &SPEC, fingerprint(&SPEC), &builder.finish())
}

fuzz_target!(|input: (Vec<Value>, Vec<Value>)| {
    let (a, b) = input;
    let Some(key_a) = derive(&a) else { return };
    assert!(key_a.starts_with("fuzz-prefix:fuzz::derive:"), "{key_a}");
    assert!(
        key_a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:/{}".contains(c)),
        "{key_a}"
    );
    assert_eq!(derive(&a), Some(key_a.clone()), "deterministic");
    let mut bincode = Vec::new();
    for arg in &a {
        bincode::serde::encode_into_std_write(arg, &mut bincode, bincode::config::standard())
            .expect("bincode encodes what the key encoding does");
    }
    let hash = format!("{{{:032x}}}", xxhash_rust::xxh3::xxh3_128(&bincode));
    assert!(key_a.ends_with(&hash), "{key_a} is not bincode's {hash}");
    if a != b {
        assert_ne!(derive(&b), Some(key_a), "{a:?} and {b:?} share a key");
    }
});
